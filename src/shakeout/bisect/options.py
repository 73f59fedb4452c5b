"""Validators for the options of `bisect` and `config-bisect`: each names its own thing.

argparse calls them with the word the user typed; a word they refuse becomes one line
("argument --max-trials: 'x' is not a trial count from 1 to 1000000"), exit status 2.
Only ASCII digits count as digits: str.isdigit() accepts '²', which int() then refuses.
"""

from __future__ import annotations

import argparse
import math
import shlex
from typing import Callable, Tuple

MAX_JOBS = 1024
MAX_CHANGE_SETS = 1000
MAX_TRIALS = 1_000_000
MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_GRACE_S = 3600


def _count(what: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what} from {low} to {high}")
        return int(text)

    parse.__name__ = what  # argparse names the type in some messages
    return parse


jobs = _count("a number of parallel trials", 1, MAX_JOBS)
change_sets = _count("a number of change sets", 1, MAX_CHANGE_SETS)
trials = _count("a trial count", 1, MAX_TRIALS)


def confidence(text: str) -> float:
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not 0.5 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a confidence of at least 0.5 and below 1 (e.g. 0.99)")
    return value


def _seconds(text: str, what: str, most_s: float, most_words: str) -> float:
    """A number of seconds in (0, most_s], ASCII only."""
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not 0 < value <= most_s:
        raise argparse.ArgumentTypeError(f"'{text}' is not a {what} in seconds, more than 0 and at most {most_words}")
    return value


def timeout(text: str) -> float:
    return _seconds(text, "timeout", MAX_TIMEOUT_S, "7 days")


def launcher(text: str) -> Tuple[str, ...]:
    """The launcher's words, split as a POSIX shell would (quotes kept together)."""
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a command line ({exc})") from None
    if not words:
        raise argparse.ArgumentTypeError(
            "the launcher is empty: give the command that runs a trial, e.g. 'srun -N1 --'"
        )
    return words


def grace(text: str) -> float:
    return _seconds(text, "grace", MAX_GRACE_S, f"{MAX_GRACE_S}")
