"""Command line: one module per command in this package; this one routes and keeps the contract.

Each command module declares its parser next to its handler (see cli/base.py); adding a
command is one module and one line in COMMAND_MODULES. Only the command being run has its
options declared, so that `shakeout status` or `--help` does not import the probes.

Exit codes (contract, the table is shakeout/outcome.py): 0 nothing vulnerable, 1 a defect is
vulnerable (or corruption reproduced), 2 usage error, 3 nothing vulnerable but something
unknown; 130 interrupted. Every error a user can cause is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import unicodedata
from typing import Any, Dict, List, Optional, Sequence

from shakeout import __version__
from shakeout.cli.base import Command, Parser
from shakeout.errors import ShakeoutError

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70

# In the order `shakeout --help` lists them.
COMMAND_MODULES = (
    "check",
    "run",
    "host",
    "vm",
    "vdso",
    "bisect",
    "bisect_match",
    "triage",
    "memtest",
    "selftest",
    "catalog",
    "status",
    "merge",
    "units",
)


def all_commands() -> Dict[str, Command]:
    commands: Dict[str, Command] = {}
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for command in getattr(module, "COMMANDS", ()) + ((module.COMMAND,) if hasattr(module, "COMMAND") else ()):
            commands[command.name] = command
    return commands


def build_parser(selected: Optional[str] = None) -> argparse.ArgumentParser:
    """Every command is listed; only `selected` (all when None) has its options declared."""
    parser = Parser(prog="shakeout", description="Is this platform silently corrupting memory?")
    parser.add_argument("--version", action="version", version="shakeout " + __version__)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in all_commands().values():
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if selected is None or selected == command.name:
            command.configure(p)
        p.set_defaults(handle=command.handle)
    sub.add_parser("cc", help="compiler wrapper adding options to some objects by hash (see shakeout cc --help)")
    return parser


def one_line(text: str) -> str:
    """A message stays one line and cannot drive the terminal: control and separator
    characters (which may come from the user's own input) are shown escaped."""
    return "".join(
        repr(c)[1:-1] if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text.replace("\n", " ")
    )


def _terminate(signum: int, frame: Any) -> None:
    # Unwind normally so that every runner's finally kills its probe's process group.
    raise SystemExit(128 + signum)


def _dispatch(argv: List[str]) -> int:
    if argv[:1] == ["cc"]:
        from shakeout.bisect.cc import cc_entry

        return cc_entry(argv[1:])
    command: List[str] = []
    if argv[:1] in (["bisect"], ["config-bisect"]) and "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(selected).parse_args(argv)
    args.command = command
    status: int = args.handle(args)
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        return _dispatch(list(sys.argv[1:] if argv is None else argv))
    except ShakeoutError as exc:
        print(f"shakeout: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("shakeout: interrupted; all probe processes were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a defect of shakeout, not of the input
        if os.environ.get("SHAKEOUT_DEBUG"):
            raise
        print(
            f"shakeout: internal error: {type(exc).__name__}: {exc} (set SHAKEOUT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
