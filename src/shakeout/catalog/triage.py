"""Triage rules as data: what a bug (or a generic cause) looks like in crash output.

Every catalog entry may carry a `[triage]` table; generic causes that belong to no catalog
entry (an ordinary software bug, faulty hardware) and the signals shared by many causes
live in shakeout/triage/signals.toml. Both are parsed here, so that a bad regex or
an unknown field is a CatalogError naming the file, caught when the catalog loads:

    [triage]
    symptoms = ["memory-corruption"]      # generic signals of these symptoms count for it
    reported_os = ["netbsd", "openbsd"]   # where crashes were reported (default: affected.os)
    raises = ["…"]                         # what would make the suspicion stronger
    lowers = ["…"]                         # what would make it weaker
    next = ["shakeout vm --kernel …"]      # commands beyond check/run, which are derived

    [[triage.signature]]                   # a line of crash output that points at this bug
    pattern = 'runtime: note: your Linux kernel may be buggy'
    weight = 10
    reason = "Go printed its note for this kernel bug"

    [[triage.cpu]]                         # CPU errata: vendor, families, models, microcode
    vendor = "AuthenticAMD"
    families = [0x17]
    models = [[0x30, 0x4f]]                # inclusive ranges; none = every model
    microcode_fixed = "0x0830107b"         # revisions below this one are affected

Patterns are Python regular expressions matched against one line at a time; a pattern
that matches an empty line would match everything and is refused.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import AbstractSet, Any, Dict, List, Optional, Pattern, Tuple

from shakeout.errors import CatalogError

with warnings.catch_warnings():  # the parser moved to re._parser in 3.11; its old name warns
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants
    import sre_parse

TRIAGE_KEYS = frozenset({"symptoms", "reported_os", "raises", "lowers", "next", "signature", "cpu"})
SIGNATURE_KEYS = frozenset({"pattern", "weight", "reason", "id", "symptom"})
CPU_KEYS = frozenset({"vendor", "families", "models", "microcode_fixed", "note"})
MAX_WEIGHT = 20
MIN_KEYWORD_CHARS = 3
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")  # patterns are joined into one prefilter regex


@dataclass(frozen=True)
class Signature:
    """A line pattern and what a match says; `symptom` is set for generic signals."""

    id: str
    pattern: Pattern[str]
    weight: int
    reason: str
    symptom: str = ""


@dataclass(frozen=True)
class CpuCondition:
    """CPUs an erratum concerns: vendor, families, model ranges, and the fixing microcode."""

    vendor: str
    families: Tuple[int, ...]
    models: Tuple[Tuple[int, int], ...] = ()
    microcode_fixed: Optional[int] = None
    note: str = ""

    def matches(self, vendor: str, family: Optional[int], model: Optional[int]) -> Optional[bool]:
        """True/False when the facts decide, None when a needed fact is missing."""
        if vendor and vendor != self.vendor:
            return False
        if family is not None and self.families and family not in self.families:
            return False
        if model is not None and self.models and not any(lo <= model <= hi for lo, hi in self.models):
            return False
        if not vendor or (self.families and family is None) or (self.models and model is None):
            return None
        return True

    def describe(self) -> str:
        parts = [self.vendor]
        if self.families:
            parts.append("family " + "/".join(f"{f:#x}" for f in self.families))
        if self.models:
            parts.append("model " + ", ".join(f"{lo:#x}-{hi:#x}" if lo != hi else f"{lo:#x}" for lo, hi in self.models))
        if self.microcode_fixed is not None:
            parts.append(f"microcode below {self.microcode_fixed:#x}")
        return " ".join(parts)


@dataclass(frozen=True)
class TriageRules:
    symptoms: Tuple[str, ...] = ()
    signatures: Tuple[Signature, ...] = ()
    cpu: Tuple[CpuCondition, ...] = ()
    reported_os: Tuple[str, ...] = ()
    raises: Tuple[str, ...] = ()
    lowers: Tuple[str, ...] = ()
    next: Tuple[str, ...] = ()


def _strings(table: Dict[str, Any], key: str, where: str) -> Tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogError(f"{where}: triage field '{key}' must be a list of strings")
    return tuple(" ".join(v.split()) for v in value)


def _unknown_keys(table: Dict[str, Any], allowed: AbstractSet[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise CatalogError("{}: unknown triage field(s) {}".format(where, ", ".join(extra)))


def compile_pattern(text: Any, where: str) -> Pattern[str]:
    """A line regex, or a CatalogError saying why it is unusable."""
    if not isinstance(text, str) or not text:
        raise CatalogError(f"{where}: a triage pattern must be a non-empty string")
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise CatalogError(f"{where}: bad triage pattern {text!r}: {exc}") from None
    if _GLOBAL_FLAGS.search(text):
        raise CatalogError(f"{where}: triage pattern {text!r} sets global flags; use a scoped group like (?i:...)")
    if pattern.search("") is not None:
        raise CatalogError(f"{where}: triage pattern {text!r} matches an empty line, so it would match every line")
    if not keywords(text):
        raise CatalogError(
            f"{where}: triage pattern {text!r} has an alternative without a literal of {MIN_KEYWORD_CHARS}+ "
            "characters that every match contains (the matcher finds candidate lines by such literals)"
        )
    return pattern


def _best(options: List[List[str]]) -> List[str]:
    """Of several literal sets that each must be present, the one whose weakest literal is longest."""
    return max(options, key=lambda lits: (min(len(x) for x in lits), -len(lits)), default=[])


def _required(items: Any) -> List[str]:
    """Literals of which every match of the parsed sequence contains at least one ([] if unknown)."""
    options: List[List[str]] = []
    run: List[str] = []
    for op, av in items:
        if op is sre_constants.LITERAL:
            run.append(chr(av))
            continue
        if len(run) >= MIN_KEYWORD_CHARS:
            options.append(["".join(run)])
        run = []
        if op is sre_constants.SUBPATTERN and not av[1]:  # a group without scoped flags
            sub = _required(av[-1])
        elif op is sre_constants.BRANCH:
            alternatives = [_required(a) for a in av[1]]
            sub = [lit for a in alternatives for lit in a] if all(alternatives) else []
        elif op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT) and av[0] >= 1:
            sub = _required(av[2])
        else:
            sub = []
        if sub:
            options.append(sub)
    if len(run) >= MIN_KEYWORD_CHARS:
        options.append(["".join(run)])
    return _best(options)


def keywords(pattern: str) -> List[str]:
    """Literals of which every line matching pattern contains one; [] when none can be derived."""
    return _required(sre_parse.parse(pattern))


def parse_signature(table: Any, default_id: str, where: str) -> Signature:
    if not isinstance(table, dict):
        raise CatalogError(f"{where}: a triage signature must be a table")
    _unknown_keys(table, SIGNATURE_KEYS, where)
    weight = table.get("weight")
    if not isinstance(weight, int) or isinstance(weight, bool) or not -MAX_WEIGHT <= weight <= MAX_WEIGHT or not weight:
        raise CatalogError(f"{where}: triage weight must be a non-zero integer from -{MAX_WEIGHT} to {MAX_WEIGHT}")
    reason = table.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise CatalogError(f"{where}: a triage signature needs a 'reason'")
    return Signature(
        id=str(table.get("id", default_id)),
        pattern=compile_pattern(table.get("pattern"), where),
        weight=weight,
        reason=" ".join(reason.split()),
        symptom=str(table.get("symptom", "")),
    )


def _int_list(value: Any, what: str, where: str) -> List[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CatalogError(f"{where}: triage cpu '{what}' must be a list of integers")
    return list(value)


def _cpu_condition(table: Any, where: str) -> CpuCondition:
    if not isinstance(table, dict):
        raise CatalogError(f"{where}: a triage cpu condition must be a table")
    _unknown_keys(table, CPU_KEYS, where)
    vendor = table.get("vendor")
    if not isinstance(vendor, str) or not vendor:
        raise CatalogError(f"{where}: a triage cpu condition needs a 'vendor' (e.g. GenuineIntel, AuthenticAMD)")
    models = []
    for pair in table.get("models", []):
        lo_hi = _int_list(pair, "models", where)
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
            raise CatalogError(f"{where}: triage cpu models are [low, high] pairs")
        models.append((lo_hi[0], lo_hi[1]))
    fixed = table.get("microcode_fixed")
    try:
        microcode = int(str(fixed), 16) if fixed is not None else None
    except ValueError:
        raise CatalogError(f"{where}: microcode_fixed '{fixed}' is not a hexadecimal revision") from None
    return CpuCondition(
        vendor=vendor,
        families=tuple(_int_list(table.get("families", []), "families", where)),
        models=tuple(models),
        microcode_fixed=microcode,
        note=str(table.get("note", "")),
    )


def parse_triage(table: Any, owner: str, where: str) -> TriageRules:
    """The `[triage]` table of a catalog entry (or of a generic suspect) named owner."""
    if not isinstance(table, dict):
        raise CatalogError(f"{where}: 'triage' must be a table")
    _unknown_keys(table, TRIAGE_KEYS, where)
    signatures = table.get("signature", [])
    cpu = table.get("cpu", [])
    if not isinstance(signatures, list) or not isinstance(cpu, list):
        raise CatalogError(f"{where}: triage 'signature' and 'cpu' are arrays of tables ([[triage.signature]])")
    return TriageRules(
        symptoms=_strings(table, "symptoms", where),
        signatures=tuple(parse_signature(s, f"{owner}#{i + 1}", where) for i, s in enumerate(signatures)),
        cpu=tuple(_cpu_condition(c, where) for c in cpu),
        reported_os=_strings(table, "reported_os", where),
        raises=_strings(table, "raises", where),
        lowers=_strings(table, "lowers", where),
        next=_strings(table, "next", where),
    )
