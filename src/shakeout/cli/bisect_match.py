"""`shakeout bisect-match PATTERN ID_OR_TEXT`: the bisect decision for shell targets.

`shakeout.entry` runs it without loading the rest of the CLI (a target may ask once per
change per trial); this module gives it a parser for `--help` and for callers of main().
"""

from __future__ import annotations

import argparse

from shakeout.cli.base import Command

DESCRIPTION = """\
Whether the bisect pattern enables a change: exit 0 enabled, 1 disabled, 2 usage error
(an invalid pattern). When the pattern asks the target to report the change, prints
`[bisect-match 0x<16 hex digits>] ID_OR_TEXT` on stdout first, which `shakeout bisect`
reads. An empty PATTERN (the target is not being bisected) enables every change and
prints nothing. ID_OR_TEXT is a change id (0x and 1 to 16 hex digits) or any text, hashed
to a 64-bit id the same way as `shakeout cc` hashes object paths and
shakeout.bisect.target.Target hashes names in Python targets."""

EPILOG = """\
examples:
  shakeout bisect-match "$PATTERN" parser-fast-path && CFLAGS="$CFLAGS -DFAST_PARSER"
  shakeout bisect-match -- "$PATTERN" 0x00000000000000a5   # a pattern may start with -
  shakeout bisect -- ./target.sh PATTERN                    # target.sh calls bisect-match

A complete shell target and the protocol are in the README, "Writing a bisect target"."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", metavar="PATTERN", help="the pattern shakeout bisect put in place of the word PATTERN")
    p.add_argument("change", metavar="ID_OR_TEXT", help="the change: 0x and 1-16 hex digits, or any text")


def handle(args: argparse.Namespace) -> int:
    from shakeout.bisect.target import bisect_match

    return bisect_match(args.pattern, args.change)


COMMAND = Command(
    "bisect-match",
    "for bisect targets: is this change enabled by PATTERN? (exit 0 yes, 1 no)",
    configure,
    handle,
    description=DESCRIPTION,
    epilog=EPILOG,
)
