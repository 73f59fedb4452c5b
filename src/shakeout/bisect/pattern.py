"""Go's bisect protocol, target side: patterns, match markers, change ids.

Pattern syntax (from the specification in Go's internal/bisect package documentation):
- optional leading "q" (quiet: report nothing), then any number of "v" (verbose reports,
  cancels q), then any number of "!" (each inverts: the pattern then names changes to
  DISABLE and report); the body "n" is an alias for "!y";
- the body is bit strings joined by "+" and "-", evaluated left to right as set addition
  and subtraction over "changes whose id ends with these bits"; "y" stands for the empty
  bit string (all changes); a term may be hexadecimal after a leading "x"; every "+"
  comes before every "-"; a leading "+" adds to the empty set, a leading "-" subtracts
  from the set of all changes.
Markers: "[bisect-match 0x1234]" (hex, at most 16 digits) or "[bisect-match 010101]"
(binary, at most 64) anywhere on a report line; the driver removes them when it shows the
lines. Go writes 16 zero-padded hex digits, so ids are compared as numbers, never as text.
"""

from __future__ import annotations

import hashlib
import re
from typing import List, Optional, Pattern, Tuple

from shakeout.errors import UsageError

# `shakeout cc` imports this module once per compilation: it avoids typing and dataclasses
# (tens of milliseconds of start-up); the marker regex is compiled on first use.
MARKER_PATTERN = r"\[bisect-match (0x[0-9a-fA-F]{1,16}|[01]{1,64})\]"
ID_BITS = 64
_marker_re: Optional[Pattern[str]] = None


def _markers() -> re.Pattern[str]:
    global _marker_re
    if _marker_re is None:
        _marker_re = re.compile(MARKER_PATTERN)
    return _marker_re


class PatternError(UsageError):
    pass


class Term:
    __slots__ = ("bits", "include", "mask")

    def __init__(self, mask: int, bits: int, include: bool) -> None:
        self.mask, self.bits, self.include = mask, bits, include

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Term) and (self.mask, self.bits, self.include) == (
            other.mask,
            other.bits,
            other.include,
        )

    def __hash__(self) -> int:
        return hash((self.mask, self.bits, self.include))


class Matcher:
    __slots__ = ("enable", "quiet", "terms", "verbose")

    def __init__(self, terms: Tuple[Term, ...], enable: bool = True, verbose: bool = False, quiet: bool = False):
        self.terms = terms
        self.enable = enable  # False after an odd number of "!": the matched changes are disabled
        self.verbose = verbose
        self.quiet = quiet

    def matches(self, change_id: int) -> bool:
        """Whether the change is in the pattern's set (the last term that applies decides)."""
        for term in reversed(self.terms):
            if change_id & term.mask == term.bits:
                return term.include
        return False

    def should_enable(self, change_id: int) -> bool:
        return self.matches(change_id) == self.enable

    def should_print(self, change_id: int) -> bool:
        return not self.quiet and self.matches(change_id)


def _term(text: str, include: bool, pattern: str) -> Term:
    if text == "y":
        return Term(0, 0, include)
    if text.startswith("x"):
        digits, width = text[1:], 4
        valid = bool(digits) and all(c in "0123456789abcdefABCDEF" for c in digits)
    else:
        digits, width = text, 1
        valid = bool(digits) and all(c in "01" for c in digits)
    if not valid:
        raise PatternError(f"invalid bisect pattern {pattern!r}: bad term {text!r}")
    nbits = len(digits) * width
    if nbits > ID_BITS:
        raise PatternError(f"invalid bisect pattern {pattern!r}: term longer than 64 bits")
    return Term((1 << nbits) - 1, int(digits, 16 if width == 4 else 2), include)


def _split_ops(body: str) -> List[str]:
    """'01+10-1' -> ['01', '+', '10', '-', '1'] (what re.split(r"([+-])") gives)."""
    tokens, start = [], 0
    for i, c in enumerate(body):
        if c in "+-":
            tokens += [body[start:i], c]
            start = i + 1
    tokens.append(body[start:])
    return tokens


def parse(pattern: str) -> Optional[Matcher]:
    """The matcher for a pattern; None for the empty pattern (not running under bisect)."""
    if pattern == "":
        return None
    p, quiet, verbose, enable = pattern, False, False, True
    if p.startswith("q"):
        quiet, p = True, p[1:]
    while p.startswith("v"):
        verbose, quiet, p = True, False, p[1:]
    while p.startswith("!"):
        enable, p = not enable, p[1:]
    if p == "n":
        enable, p = not enable, "y"
    if not p:
        raise PatternError(f"invalid bisect pattern {pattern!r}: nothing after the prefixes")
    terms: List[Term] = []
    tokens = _split_ops(p)
    first, rest = tokens[0], tokens[1:]
    if first:
        terms.append(_term(first, True, pattern))
    elif rest and rest[0] == "-":
        terms.append(Term(0, 0, True))  # a leading "-" subtracts from everything
    seen_minus = False
    for op, text in zip(rest[::2], rest[1::2]):
        if op == "+" and seen_minus:
            raise PatternError(f"invalid bisect pattern {pattern!r}: '+' after '-'")
        seen_minus = seen_minus or op == "-"
        terms.append(_term(text, op == "+", pattern))
    return Matcher(tuple(terms), enable, verbose, quiet)


def verbose(pattern: str) -> str:
    """The same selection, asking the target for its full report lines."""
    return "v" + pattern


def strip_verbose(pattern: str) -> str:
    """The selection a pattern makes, without the report prefix (the key for its evidence)."""
    return pattern.lstrip("v")


def marker(change_id: int) -> str:
    """The match marker as Go writes it: 16 zero-padded hex digits."""
    return f"[bisect-match {change_id:#018x}]"


def find_markers(line: str) -> List[int]:
    if "[bisect-match" not in line:
        return []
    return [int(m, 16) if m.startswith("0x") else int(m, 2) for m in _markers().findall(line)]


def strip_markers(line: str) -> str:
    return str(_markers().sub("", line)).strip()


def change_id(*parts: str) -> int:
    """A 64-bit id for a change site, from its identifying text."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def suffix_of(change_id: int, length: int) -> str:
    """The last `length` bits of an id, as a binary suffix term."""
    return format(change_id & ((1 << length) - 1), f"0{length}b") if length else "y"
