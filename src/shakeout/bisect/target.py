"""Writing a bisect target: the public API for Python targets and `shakeout bisect-match`.

A target is the program `shakeout bisect` runs once per trial. Each trial hands it a
PATTERN (the word PATTERN in the command is replaced, e.g. `BISECT_PATTERN=PATTERN`); for
every change it could make, the target asks the pattern whether that change is enabled,
and prints a marker line for the changes the pattern asks it to report. Its exit status
says how the trial went: 0 passed, anything else failed.

    from shakeout.bisect.target import Target

    target = Target.from_environment()        # $BISECT_PATTERN; unset or empty: not bisecting
    if target.enabled("parser: fast path"):   # prints "[bisect-match 0x…] parser: fast path"
        ...                                   # when the pattern asks for a report

A change is named by any stable text (hashed to a 64-bit id, as `shakeout cc` hashes
object paths) or by its id as an int. Without a pattern every change is enabled and
nothing is printed, so the target behaves normally when it is not being bisected.
`shakeout bisect-match PATTERN ID_OR_TEXT` is the same decision for shell targets: exit 0
enabled, 1 disabled, 2 an invalid pattern; it also takes the id as 0x and 1 to 16 hex digits.

This module stays light (only the pattern matcher): a shell target may run
`shakeout bisect-match` once per change per trial.
"""

from __future__ import annotations

import os
import sys
from typing import List, Mapping, Optional, TextIO, Union

from shakeout.bisect.pattern import change_id, marker, parse

DEFAULT_VARIABLE = "BISECT_PATTERN"
HEX_DIGITS = "0123456789abcdefABCDEF"
Change = Union[int, str]


def change_number(change: Change) -> int:
    """The 64-bit id of a change: an int as it is, a text hashed (the same hash as `shakeout cc`)."""
    if isinstance(change, int):
        if not 0 <= change < 1 << 64:
            raise ValueError(f"a change id is a 64-bit unsigned number, not {change}")
        return change
    return change_id(change)


def parse_change(word: str) -> int:
    """A command-line change: '0x' and 1 to 16 hex digits is an id, any other word a text."""
    digits = word[2:]
    if word.startswith("0x") and 1 <= len(digits) <= 16 and all(c in HEX_DIGITS for c in digits):
        return int(digits, 16)
    return change_id(word)


class Target:
    """The target side of one trial: which changes the pattern enables, and which to report."""

    def __init__(self, pattern: str, report_to: Optional[TextIO] = None) -> None:
        self.pattern = pattern
        self._matcher = parse(pattern)  # None when not bisecting; PatternError when invalid
        self._report_to = report_to

    @classmethod
    def from_environment(cls, variable: str = DEFAULT_VARIABLE, environ: Optional[Mapping[str, str]] = None) -> Target:
        return cls((os.environ if environ is None else environ).get(variable, ""))

    def enabled(self, change: Change, description: Optional[str] = None) -> bool:
        """Whether to make the change; prints its marker line first when the pattern asks for it."""
        number = change_number(change)
        line = self.report_line(number, description if description is not None else _text(change))
        if line is not None:
            print(line, file=self._report_to or sys.stderr, flush=True)
        return self._matcher is None or self._matcher.should_enable(number)

    def report_line(self, change: Change, description: str = "") -> Optional[str]:
        """'[bisect-match 0x…] description' if the pattern asks to report the change, else None."""
        number = change_number(change)
        if self._matcher is None or not self._matcher.should_print(number):
            return None
        return f"{marker(number)} {description}".rstrip()


def _text(change: Change) -> str:
    return change if isinstance(change, str) else ""


def bisect_match(pattern: str, change: str) -> int:
    """`shakeout bisect-match PATTERN ID_OR_TEXT`: exit 0 enabled, 1 disabled (a bad pattern: UsageError)."""
    if "\0" in change:
        from shakeout.errors import UsageError

        raise UsageError("ID_OR_TEXT contains a NUL byte")
    number = parse_change(change)
    description = "" if number != change_id(change) else change  # an id is not repeated
    return 0 if Target(pattern, sys.stdout).enabled(number, description) else 1


def bisect_match_main(words: List[str]) -> int:
    """The light entry (`[--] PATTERN ID_OR_TEXT`), with the CLI's error contract."""
    from shakeout.errors import ShakeoutError

    if words[:1] == ["--"]:
        words = words[1:]
    try:
        if len(words) != 2:
            from shakeout.errors import UsageError

            raise UsageError("bisect-match takes PATTERN and ID_OR_TEXT (see 'shakeout bisect-match --help')")
        return bisect_match(words[0], words[1])
    except ShakeoutError as exc:
        print(f"shakeout bisect-match: error: {exc}", file=sys.stderr)
        return exc.exit_code
