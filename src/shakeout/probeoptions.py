"""A probe's options as its binary states them: read from `--describe`, never restated here.

Every native probe declares its options in one C table (probe.h: name, kind, range or
choices, default, help with units, internal or not) and prints it with `--describe`;
nativebuild stores that as `_bin/<probe>.options.json` at build time. This module reads
the table (once per binary) and validates `--set name=value` exactly as the probe's C
parser will, so a bad value is a one-line usage error before anything runs. Digits are
ASCII only: str.isdigit() also accepts '²' and full-width digits, which C rejects.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from shakeout.binaries import BIN_DIR
from shakeout.errors import ShakeoutError
from shakeout.nativebuild import option_table_path

KINDS = ("int", "seconds", "choice", "list", "flag", "text")
NUMBER = re.compile(r"[0-9.eE+-]+")  # what probe.c's parse_number lets through to strtod
MAX_DIGITS = 18


def is_decimal(value: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' and full-width digits, which int() or C reject."""
    return bool(value) and all("0" <= c <= "9" for c in value) and len(value) <= MAX_DIGITS


def integer_in(low: int, high: int) -> Callable[[str], bool]:
    """An option check: a decimal integer from low to high."""
    return lambda value: is_decimal(value) and low <= int(value) <= high


def _is_integer(value: str) -> bool:
    return is_decimal(value[1:] if value.startswith("-") else value)


def _seconds(value: str) -> Optional[float]:
    if not NUMBER.fullmatch(value):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _bound(value: Any) -> Optional[float]:
    """A table's min or max: whole numbers stay integers (as they are shown)."""
    if value is None:
        return None
    number = float(value)
    return int(number) if number.is_integer() else number


@dataclass(frozen=True)
class ProbeOption:
    """One option of a probe. From a binary's table (`from_table`) every field is the C
    table's; `check` is an extra test of the value that only Python can make."""

    name: str
    help: str
    choices: Tuple[str, ...] = ()
    check: Optional[Callable[[str], bool]] = None
    kind: str = "text"
    minimum: Optional[float] = None  # int and seconds: the range (seconds: more than minimum); text: length
    maximum: Optional[float] = None
    default: Optional[str] = None  # None: the probe chooses (help says how)
    internal: bool = False  # only shakeout itself sets it (a fixed mode, an injection switch)

    @classmethod
    def from_table(cls, row: Dict[str, Any]) -> ProbeOption:
        kind = row.get("kind")
        if kind not in KINDS or not isinstance(row.get("name"), str):
            raise ValueError(f"not an option row: {row!r}")
        return cls(
            name=row["name"],
            help=str(row.get("help", "")),
            choices=tuple(str(c) for c in row.get("choices", ())),
            kind=kind,
            minimum=_bound(row.get("min")),
            maximum=_bound(row.get("max")),
            default=row.get("default"),
            internal=bool(row.get("internal")),
        )

    def accepts(self, value: str) -> bool:
        if "\0" in value or not self._fits_kind(value):
            return False
        return self.check(value) if self.check else True

    def _fits_kind(self, value: str) -> bool:
        if self.kind == "int":
            return _is_integer(value) and self._within(int(value))
        if self.kind == "seconds":
            seconds = _seconds(value)
            above = self.minimum is None or (seconds is not None and seconds > self.minimum)
            return seconds is not None and above and self._within(seconds, low=False)
        if self.kind == "choice" or (self.kind == "text" and self.choices):
            return value in self.choices
        if self.kind == "list":
            return all(item in self.choices for item in value.split(","))
        if self.kind == "flag":
            return False  # a bare switch: no value to set
        return self._within(len(value.encode("utf-8", "surrogateescape")))

    def _within(self, number: float, low: bool = True) -> bool:
        above = not low or self.minimum is None or number >= self.minimum
        return above and (self.maximum is None or number <= self.maximum)

    def allowed(self) -> str:
        """What a valid value is, in the words probe.c uses for a bad argument."""
        if self.kind == "int" and self.minimum is not None and self.maximum is not None:
            return f"an integer from {self.minimum:.0f} to {self.maximum:.0f}"
        if self.kind == "seconds":
            return f"seconds, more than {self.minimum:g} and at most {self.maximum:g}"
        if self.choices:
            return ("a comma-separated list of " if self.kind == "list" else "one of ") + ", ".join(self.choices)
        if self.kind == "text" and self.minimum is not None and self.maximum is not None:
            return f"text of {self.minimum:.0f} to {self.maximum:.0f} bytes"
        return self.help


@dataclass(frozen=True)
class OptionTable:
    """A binary's whole table: the four options every probe takes, then its own."""

    probe: str
    options: Tuple[ProbeOption, ...]
    common: Tuple[str, ...]

    def own(self) -> Tuple[ProbeOption, ...]:
        """The probe's own options (what `--set` and Injection.options may name)."""
        return tuple(o for o in self.options if o.name not in self.common)

    def option(self, name: str) -> Optional[ProbeOption]:
        return next((o for o in self.options if o.name == name), None)


def parse_table(text: str) -> OptionTable:
    """A `--describe` document; ValueError when it is not one."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("options"), list):
        raise ValueError("no options list")
    rows = doc["options"]
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("an option row is not an object")
    common = tuple(str(r.get("name")) for r in rows if r.get("common"))
    return OptionTable(str(doc.get("probe", "")), tuple(ProbeOption.from_table(r) for r in rows), common)


@functools.lru_cache(maxsize=None)
def option_table(binary: str, bin_dir: Path = BIN_DIR) -> OptionTable:
    """The table nativebuild stored for this binary; one line of ShakeoutError when it cannot be read."""
    path = option_table_path(bin_dir, binary)
    try:
        return parse_table(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShakeoutError(
            f"the option table of the native probe '{binary}' is missing (expected at {path}); reinstall "
            "shakeout with 'pip install .' on a machine with gcc"
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ShakeoutError(f"the option table of the native probe '{binary}' ({path}) is unreadable: {exc}") from None
