"""`shakeout list`, `show ID` and `probes`: the catalog of known bugs and the probes that check them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict

from shakeout.cli.base import Command
from shakeout.cli.help import add_epilog


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="text", choices=["text", "json"], help="output format (default: text)")


def _print_json(doc: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def handle_list(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.discovery import list_doc
    from shakeout.report.text import render_catalog_list, stdout_console

    bugs = list(load_catalog().values())
    if args.format == "json":
        _print_json(list_doc(bugs))
    else:
        render_catalog_list(bugs, stdout_console())
    return 0


def configure_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="a bug id, a probe id or a CVE id (CVE-YYYY-NNNN)")
    _format_option(p)
    add_epilog(p, SHOW_EXAMPLES, bugs=True, probes=True)


def handle_show(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.discovery import find_subject, probe_doc, show_doc
    from shakeout.probes import all_probes
    from shakeout.report.text import render_bug, render_probe, stdout_console

    bugs = load_catalog()
    subject = find_subject(args.id, bugs, all_probes())
    if args.format == "json":
        _print_json(show_doc(subject, list(bugs.values())))
        return 0
    console = stdout_console()
    if subject.probe is not None:
        render_probe(probe_doc(subject.probe, list(bugs.values())), console)
    for bug in subject.bugs:
        console.print()
        render_bug(bug, console)
    return 0


def handle_probes(args: argparse.Namespace) -> int:
    from shakeout.catalog import load_catalog
    from shakeout.discovery import probes_doc
    from shakeout.probes import all_probes
    from shakeout.report.text import render_probes, stdout_console

    doc = probes_doc(list(all_probes().values()), list(load_catalog().values()))
    if args.format == "json":
        _print_json(doc)
    else:
        render_probes(doc["probes"], stdout_console())
    return 0


LIST_EPILOG = """\
examples:
  shakeout list
  shakeout list --format json | jq -r '.bugs[] | select(.kind == "defect") | .id'
  shakeout show linux-signal-vector"""

PROBES_EPILOG = """\
examples:
  shakeout probes
  shakeout probes --format json | jq '.probes[] | {id, options: [.options[].name]}'
  shakeout run signal-vector --set regs=xmm --duration 30"""


SHOW_EXAMPLES = """\
  shakeout show linux-signal-vector   # a bug: mechanism, affected versions, fix, mitigations
  shakeout show signal-vector         # a probe: its options and the bugs it checks
  shakeout show CVE-2019-19602 --format json"""


COMMANDS = (
    Command(
        "list",
        "the catalog of known bugs",
        _format_option,
        handle_list,
        description="The catalog of known bugs: id, kind (defect or hazard), CVE, the probes that check it, title.",
        epilog=LIST_EPILOG,
    ),
    Command(
        "show",
        "one bug, probe or CVE: mechanism, affected ranges, fix, mitigations, references",
        configure_show,
        handle_show,
        description=(
            "One bug (mechanism, affected versions and CPUs, fix, mitigations with what each buys, references), "
            "a probe (its options and the bugs it checks, then those bugs), or every bug a CVE names."
        ),
    ),
    Command(
        "probes",
        "the probes, their options (range or choices, default, units) and the bugs each checks",
        _format_option,
        handle_probes,
        epilog=PROBES_EPILOG,
    ),
)
