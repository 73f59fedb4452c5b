"""The triage matcher: crash output in, suspects ranked by weighted evidence out (pure).

Suspects are the catalog entries plus generic causes ("software", "hardware") from
signals.toml. A suspect's score is the sum of
  - the weight of every distinct signal that matched, counted once however often it
    matched: the entry's own signatures and the generic signals of the symptoms the
    entry names;
  - computed signals: a faulting address one bit away from a valid value printed within
    BITFLIP_WINDOW lines of it (bit 12 or above, both values at least 0x10000), and, with
    several hosts, a crash seen on one host only or on every host;
  - context from the machine facts in the log (facts.py) against the entry's `affected`
    table, reusing the catalog's KernelRange/CompilerCondition/Backport objects: positive
    context counts only when the entry already has crash evidence (a kernel in range is a
    precondition, not a sign), negative context always counts.
Invariants: the matcher keeps at most MAX_EXAMPLES lines per signal and MAX_HOSTS hosts, so
its memory does not grow with the input; it never reads files or the clock (reader.py
feeds it text); a score is a suspicion, never a verdict: only a probe run decides.

Input arrives in chunks of whole lines. Every pattern has literals one of which each match
must contain (rules.keywords); str.find locates the lines holding one, and only those lines
run the regular expressions, so a large log costs a few C-speed scans per chunk.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from shakeout.assess import ARCH_ALIASES
from shakeout.catalog import Bug
from shakeout.catalog.triage import Signature, TriageRules, keywords, parse_signature, parse_triage
from shakeout.errors import CatalogError
from shakeout.triage.facts import FACT_PREFILTER, HostFacts, LineRef, line_facts, syslog_host

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on the older Pythons only
    import tomli as tomllib

SIGNALS_PATH = Path(__file__).resolve().parent / "signals.toml"
MAX_EXAMPLES = 5
MAX_HOSTS = 256
MAX_BITFLIPS = 5
BITFLIP_WINDOW = 30
BITFLIP_MIN_VALUE = 0x10000
BITFLIP_MIN_BIT = 12
MAX_SHOWN_CHARS = 300
LEVELS = ((10, "strong"), (5, "moderate"), (1, "weak"))
DISCLAIMER = (
    "A triage answer is a suspicion with reasons, never a verdict: only a probe run on the machine that "
    "crashed (the commands below) can say whether a platform bug is there."
)
CONTEXT_KEYS = [
    "os_match",
    "os_mismatch",
    "arch_mismatch",
    "kernel_in_range",
    "kernel_outside",
    "compiler_match",
    "compiler_outside",
    "backported",
    "cpu_match",
    "cpu_outside",
    "microcode_below_fix",
    "microcode_fixed",
]
ARCH_FAMILY = dict(ARCH_ALIASES, i386="i386", i486="i386", i586="i386", i686="i386", **{"386": "i386"})

_FAULT = re.compile(
    r"\baddr=0x([0-9a-f]+)|unexpected fault address 0x([0-9a-f]+)|segfault at ([0-9a-f]+) ip|"
    r"(?:on|unknown) address 0x([0-9a-f]+)|fault addr(?:ess)?:? 0x([0-9a-f]+)|non-canonical address 0x([0-9a-f]+)|"
    r"unable to handle [\w ]+? (?:at|for address):? (?:0x)?([0-9a-f]+)"
)
_HEX_VALUE = re.compile(r"\b0x([0-9a-fA-F]{5,16})\b|\b([0-9a-f]{8,16})\b")


@dataclass(frozen=True)
class Suspect:
    id: str
    title: str
    rules: TriageRules
    bug: Optional[Bug] = None  # None for a generic cause


@dataclass(frozen=True)
class Rules:
    suspects: Tuple[Suspect, ...]
    signals: Tuple[Signature, ...]  # generic signals and every entry's own signatures
    owner: Dict[str, str]  # signature id -> the one suspect it belongs to (own signatures)
    symptoms: Dict[str, str]
    context: Dict[str, int]
    computed: Dict[str, Signature]


@dataclass
class Evidence:
    """One reason for (weight > 0) or against (weight < 0) a suspect, with the lines behind it."""

    id: str
    kind: str  # signal | computed | context
    weight: int
    reason: str
    lines: List[LineRef] = field(default_factory=list)
    count: int = 0  # matching lines in the whole input

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "weight": self.weight,
            "reason": self.reason,
            "count": self.count,
            "lines": [r.to_dict() for r in self.lines],
        }


@dataclass
class SuspectResult:
    id: str
    title: str
    kind: str  # catalog-defect | catalog-hazard | generic
    score: int
    level: str  # strong | moderate | weak | not indicated
    evidence: List[Evidence]
    raises: List[str]
    lowers: List[str]
    commands: List[str]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "score": self.score,
            "level": self.level,
            "evidence": [e.to_dict() for e in self.evidence],
            "would_raise": self.raises,
            "would_lower": self.lowers,
            "commands": self.commands,
        }


@dataclass
class TriageResult:
    suspects: List[SuspectResult]  # ranked, score > 0
    not_indicated: List[SuspectResult]  # evidence but score <= 0
    hosts: Dict[str, Dict[str, Any]]
    lines_read: Dict[str, int]
    notes: List[str]
    recognised: bool
    disclaimer: str = DISCLAIMER


# ----------------------------------------------------------------------------- rules


def _computed(data: Dict[str, Any]) -> Dict[str, Signature]:
    out = {}
    for name, table in data.items():
        table = dict(table, pattern=re.escape(name))  # computed signals match no line themselves
        out[name] = parse_signature(table, name, f"signals.toml [computed.{name}]")
    return out


def build_rules(bugs: Iterable[Bug], generic: Dict[str, Any]) -> Rules:
    """Rules from the catalog and the parsed signals.toml; a CatalogError if they disagree."""
    where = "triage/signals.toml"
    symptoms = {str(k): " ".join(str(v).split()) for k, v in generic.get("symptoms", {}).items()}
    context = dict(generic.get("context", {}))
    missing = [k for k in CONTEXT_KEYS if not isinstance(context.get(k), int)]
    if missing:
        raise CatalogError("{}: [context] lacks integer weights for {}".format(where, ", ".join(missing)))
    suspects = [
        Suspect(str(s["id"]), str(s["title"]), parse_triage(s.get("triage", {}), str(s["id"]), where))
        for s in generic.get("suspect", [])
    ]
    suspects += [Suspect(b.id, b.title, b.triage, b) for b in bugs]
    signals = [parse_signature(t, str(t.get("id", "")), where) for t in generic.get("signal", [])]
    owner: Dict[str, str] = {}
    for suspect in suspects:
        unknown = [s for s in suspect.rules.symptoms if s not in symptoms]
        if unknown:
            raise CatalogError("{}: triage names unknown symptom(s) {}".format(suspect.id, ", ".join(unknown)))
        for sig in suspect.rules.signatures:
            owner[sig.id] = suspect.id
            signals.append(sig)
    for sig in signals:
        if sig.id not in owner and sig.symptom not in symptoms:
            raise CatalogError(f"{where}: signal '{sig.id}' names unknown symptom '{sig.symptom}'")
    computed = _computed(generic.get("computed", {}))
    return Rules(tuple(suspects), tuple(signals), owner, symptoms, context, computed)


def load_rules(bugs: Iterable[Bug], path: Path = SIGNALS_PATH) -> Rules:
    try:
        generic = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path.name}: {exc}") from None
    return build_rules(bugs, generic)


# ----------------------------------------------------------------------------- scanning


@dataclass
class _Hits:
    count: int = 0
    lines: List[LineRef] = field(default_factory=list)

    def add(self, ref: LineRef) -> None:
        self.count += 1
        if len(self.lines) < MAX_EXAMPLES:
            self.lines.append(ref)


@dataclass
class _Pending:
    """A fault whose window of following lines continues in the next chunk."""

    address: int
    ref: LineRef
    remaining: int


def _shown(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_SHOWN_CHARS else line[: MAX_SHOWN_CHARS - 1] + "…"


def _minimal_keywords(candidates: Iterable[str]) -> List[str]:
    """Drop every keyword that contains another: a line holding it holds the shorter one too."""
    unique = sorted(set(candidates), key=len)
    kept: List[str] = []
    for word in unique:
        if not any(k in word for k in kept):
            kept.append(word)
    return kept


def fault_addresses(line: str) -> List[int]:
    return [int(next(g for g in m.groups() if g), 16) for m in _FAULT.finditer(line)]


def one_bit_apart(fault: int, value: int) -> Optional[int]:
    """The differing bit when fault and value differ in exactly one bit at BITFLIP_MIN_BIT or above."""
    if min(fault, value) < BITFLIP_MIN_VALUE:
        return None
    diff = fault ^ value
    if diff == 0 or diff & (diff - 1):
        return None
    bit = diff.bit_length() - 1
    return bit if bit >= BITFLIP_MIN_BIT else None


class Scanner:
    """Feed chunks of whole lines per source; result() ranks the suspects. No I/O."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        patterns = [s.pattern.pattern for s in rules.signals] + [FACT_PREFILTER, _FAULT.pattern]
        self._keywords = _minimal_keywords(k for p in patterns for k in keywords(p))
        self._hits: Dict[str, _Hits] = {}
        self._host_signals: Dict[Tuple[str, str], Set[str]] = {}
        self._facts: Dict[Tuple[str, str], HostFacts] = {}
        self._declared: Dict[str, str] = {}
        self._lines: Dict[str, int] = {}
        self._nonblank: Set[str] = set()
        self._tail: Dict[str, List[str]] = {}
        self._pending: Dict[str, List[_Pending]] = {}
        self._bitflips: List[Tuple[LineRef, LineRef, int]] = []
        self._notes: List[str] = []

    def feed(self, source: str, text: str) -> None:
        base = self._lines.setdefault(source, 0)
        if source not in self._nonblank and text.strip():
            self._nonblank.add(source)
        faults: List[Tuple[int, int, LineRef]] = []
        counted_to, line_no = 0, base + 1
        for start in self._candidate_lines(text):
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            line_no += text.count("\n", counted_to, start)
            counted_to = start
            faults += self._analyse(source, line_no, text[start:end])
        newlines = text.count("\n")
        if faults or self._pending.get(source):
            self._bitflip_windows(source, text, base, faults)
        self._remember_tail(source, text)
        self._lines[source] = base + newlines + (0 if text.endswith("\n") or not text else 1)

    def _candidate_lines(self, text: str) -> List[int]:
        """Start offsets of the lines holding a keyword: str.find runs at C speed, regexes do not."""
        starts = set()
        for keyword in self._keywords:
            at = text.find(keyword)
            while at >= 0:
                starts.add(text.rfind("\n", 0, at) + 1)
                end = text.find("\n", at)
                at = -1 if end < 0 else text.find(keyword, end + 1)
        return sorted(starts)

    def _analyse(self, source: str, line_no: int, line: str) -> List[Tuple[int, int, LineRef]]:
        ref = LineRef(source, line_no, _shown(line))
        key = self._host_key(source, syslog_host(line))
        for sig in self.rules.signals:
            if sig.pattern.search(line):
                self._hits.setdefault(sig.id, _Hits()).add(ref)
                if key is not None:
                    self._host_signals.setdefault(key, set()).add(sig.id)
        found, declared = line_facts(line)
        if found and key is not None:
            self._facts.setdefault(key, HostFacts()).absorb(found, ref)
        if declared:
            self._declared.setdefault(source, declared)
        return [(line_no, address, ref) for address in fault_addresses(line) if address >= BITFLIP_MIN_VALUE]

    def _host_key(self, source: str, host: str) -> Optional[Tuple[str, str]]:
        key = (source, host)
        if key in self._host_signals or key in self._facts or len(self._host_signals) + len(self._facts) < MAX_HOSTS:
            return key
        note = f"more than {MAX_HOSTS} hosts: lines of further hosts count for the suspects but not per host"
        if note not in self._notes:
            self._notes.append(note)
        return None

    # -- bit flips: a fault compared with the values printed around it

    def _bitflip_windows(self, source: str, text: str, base: int, faults: List[Tuple[int, int, LineRef]]) -> None:
        lines = text.split("\n")
        tail = self._tail.get(source, [])
        for pending in self._pending.pop(source, []):
            self._compare(pending.address, pending.ref, source, base + 1, lines[: pending.remaining])
        for line_no, address, ref in faults:
            index = line_no - base - 1
            before = (tail + lines[:index])[-BITFLIP_WINDOW:]
            self._compare(address, ref, source, line_no - len(before), before)
            after = lines[index : index + 1 + BITFLIP_WINDOW]
            self._compare(address, ref, source, line_no, after)
            missing = BITFLIP_WINDOW + 1 - len(after)
            if missing > 0:
                self._pending.setdefault(source, []).append(_Pending(address, ref, missing))

    def _compare(self, address: int, ref: LineRef, source: str, first_line: int, window: List[str]) -> None:
        if len(self._bitflips) >= MAX_BITFLIPS:
            return
        for offset, line in enumerate(window):
            for m in _HEX_VALUE.finditer(line):
                value = int(m.group(1) or m.group(2), 16)
                bit = one_bit_apart(address, value)
                if bit is not None and value != address:
                    where = LineRef(source, first_line + offset, _shown(line))
                    if all((r.line, w.line) != (ref.line, where.line) for r, w, _ in self._bitflips):
                        self._bitflips.append((ref, where, bit))
                    return

    def _remember_tail(self, source: str, text: str) -> None:
        pieces = text.rstrip("\n").rsplit("\n", BITFLIP_WINDOW)
        self._tail[source] = (self._tail.get(source, []) + pieces)[-BITFLIP_WINDOW:]

    # -- the result

    def result(self, reader_notes: Iterable[str] = ()) -> TriageResult:
        hosts, host_signals = self._resolve_hosts()
        computed = self._computed_evidence(hosts, host_signals)
        crashed = [h for h in hosts if host_signals.get(h)]
        relevant = [hosts[h] for h in (crashed or list(hosts))]
        results = [self._score(s, computed, relevant) for s in self.rules.suspects]
        ranked = sorted((r for r in results if r.score > 0), key=lambda r: (-r.score, -len(r.evidence), r.id))
        aside = sorted((r for r in results if r.score <= 0 and r.evidence), key=lambda r: r.id)
        return TriageResult(
            suspects=ranked,
            not_indicated=aside,
            hosts={name: dict(facts.to_dict(), crashed=bool(host_signals.get(name))) for name, facts in hosts.items()},
            lines_read=dict(self._lines),
            notes=list(reader_notes) + self._notes,
            recognised=bool(self._hits),
        )

    def _host_name(self, source: str, host: str) -> str:
        return host or self._declared.get(source) or source

    def _resolve_hosts(self) -> Tuple[Dict[str, HostFacts], Dict[str, Set[str]]]:
        hosts: Dict[str, HostFacts] = {}
        signals: Dict[str, Set[str]] = {}
        keyed_sources = {source for source, _ in list(self._facts) + list(self._host_signals)}
        for source in sorted(self._nonblank - keyed_sources):
            hosts.setdefault(self._host_name(source, ""), HostFacts())
        for (source, host), facts in sorted(self._facts.items()):
            merged = hosts.setdefault(self._host_name(source, host), HostFacts())
            for fact, ref in facts.seen_at.items():
                merged.absorb({fact: getattr(facts, fact)}, ref)
        for (source, host), ids in sorted(self._host_signals.items()):
            name = self._host_name(source, host)
            hosts.setdefault(name, HostFacts())
            signals.setdefault(name, set()).update(ids)
        return hosts, signals

    def _computed_evidence(self, hosts: Dict[str, HostFacts], host_signals: Dict[str, Set[str]]) -> List[Evidence]:
        out = []
        if self._bitflips:
            sig = self.rules.computed["bit-flip"]
            reasons = "; ".join(
                f"{fault.source}:{fault.line} vs {value.source}:{value.line} differ in bit {bit}"
                for fault, value, bit in self._bitflips
            )
            lines = sorted({r for fault, value, _ in self._bitflips for r in (fault, value)}, key=lambda r: r.line)
            out.append(
                Evidence("bit-flip", "computed", sig.weight, f"{sig.reason} ({reasons})", lines, len(self._bitflips))
            )
        crashed = [h for h in hosts if host_signals.get(h)]
        if len(hosts) >= 2 and len(crashed) == 1:
            healthy = ", ".join(h for h in hosts if h != crashed[0])
            out.append(self._population("one-host", f"crashed: {crashed[0]}; no crash sign on: {healthy}"))
        elif len(hosts) >= 2 and len(crashed) == len(hosts):
            common = set.intersection(*(host_signals[h] for h in crashed))
            if common:
                out.append(self._population("every-host", "common signals: " + ", ".join(sorted(common))))
        return out

    def _population(self, name: str, detail: str) -> Evidence:
        sig = self.rules.computed[name]
        return Evidence(name, "computed", sig.weight, f"{sig.reason} ({detail})", [], 1)

    def _score(self, suspect: Suspect, computed: List[Evidence], hosts: List[HostFacts]) -> SuspectResult:
        rules = suspect.rules
        evidence = []
        for sig in self.rules.signals:
            hits = self._hits.get(sig.id)
            mine = self.rules.owner.get(sig.id) == suspect.id or (
                sig.id not in self.rules.owner and sig.symptom in rules.symptoms
            )
            if hits and mine:
                evidence.append(Evidence(sig.id, "signal", sig.weight, sig.reason, hits.lines, hits.count))
        symptom_of = {name: sig.symptom for name, sig in self.rules.computed.items()}
        evidence += [e for e in computed if symptom_of[e.id] in rules.symptoms]
        crash_score = sum(e.weight for e in evidence)
        missing: List[str] = []
        if suspect.bug is not None:
            context = _context(suspect.bug, self.rules.context, hosts, missing)
            evidence += [e for e in context if e.weight < 0 or crash_score > 0]
        score = sum(e.weight for e in evidence)
        return SuspectResult(
            id=suspect.id,
            title=suspect.title,
            kind=f"catalog-{suspect.bug.kind}" if suspect.bug else "generic",
            score=score,
            level=next((name for floor, name in LEVELS if score >= floor), "not indicated"),
            evidence=sorted(evidence, key=lambda e: -e.weight),
            raises=missing + list(rules.raises),
            lowers=list(rules.lowers),
            commands=_commands(suspect),
        )


# ----------------------------------------------------------------------------- context


def _context(bug: Bug, weights: Dict[str, int], hosts: List[HostFacts], missing: List[str]) -> List[Evidence]:
    """Facts from the log against the entry's affected table; the strongest per kind across hosts."""
    best: Dict[str, Evidence] = {}
    for facts in hosts:
        for e in _host_context(bug, weights, facts):
            group = e.id.split(":")[0]
            if group not in best or e.weight > best[group].weight:
                best[group] = e
    known = {k for h in hosts for k in h.seen_at}
    if bug.affected.kernel and "kernel_version" not in known and "linux" in bug.affected.os:
        missing.append("the kernel version of the crashing machine (paste `uname -a` and `cat /proc/version`)")
    elif bug.affected.kernel_compiler and "kernel_compiler" not in known and "linux" in bug.affected.os:
        missing.append("the compiler that built the kernel (paste `cat /proc/version`)")
    if (bug.affected.cpu_vendors or bug.triage.cpu) and "cpu_vendor" not in known:
        missing.append("the CPU (paste the vendor_id, cpu family, model and microcode lines of /proc/cpuinfo)")
    if "os" not in known:
        missing.append("the operating system (paste `uname -a`)")
    return list(best.values())


def _ev(key: str, weights: Dict[str, int], reason: str, facts: HostFacts, fact: str) -> Evidence:
    ref = facts.seen_at.get(fact)
    return Evidence(f"{key.split('_')[0]}:{key}", "context", weights[key], reason, [ref] if ref else [], 1)


def _host_context(bug: Bug, weights: Dict[str, int], facts: HostFacts) -> List[Evidence]:
    out = []
    affected = bug.affected
    reported = bug.triage.reported_os or affected.os
    if facts.os:
        if facts.os in reported:
            out.append(_ev("os_match", weights, f"the log shows {facts.os}, an OS this bug concerns", facts, "os"))
        else:
            reason = "the log shows {}; this bug concerns {}".format(facts.os, ", ".join(reported))
            out.append(_ev("os_mismatch", weights, reason, facts, "os"))
    family = {ARCH_FAMILY.get(a, a) for a in affected.arch}
    if facts.arch and family and ARCH_FAMILY.get(facts.arch, facts.arch) not in family:
        reason = "the log shows {}; this bug concerns {}".format(facts.arch, ", ".join(affected.arch))
        out.append(_ev("arch_mismatch", weights, reason, facts, "arch"))
    if affected.kernel and facts.kernel_version and facts.os in ("", "linux"):
        out += _kernel_context(bug, weights, facts)
    return out + _cpu_context(bug, weights, facts)


def _kernel_context(bug: Bug, weights: Dict[str, int], facts: HostFacts) -> List[Evidence]:
    affected, version = bug.affected, facts.kernel_version
    assert version is not None
    ranges = " or ".join(str(r) for r in affected.kernel)
    if not any(r.contains(version) for r in affected.kernel):
        return [_ev("kernel_outside", weights, f"kernel {version} is outside {ranges}", facts, "kernel_version")]
    out = [_ev("kernel_in_range", weights, f"kernel {version} is in {ranges}", facts, "kernel_version")]
    condition, compiler = affected.kernel_compiler, facts.kernel_compiler
    if condition and compiler and compiler.major is not None:
        wanted = f"{condition.name} {condition.min_major}+"
        if compiler.name != condition.name or compiler.major < condition.min_major:
            reason = f"the kernel was built with {compiler}; only {wanted} builds carry the bug"
            out.append(_ev("compiler_outside", weights, reason, facts, "kernel_compiler"))
        else:
            reason = f"the kernel was built with {compiler}, as affected builds were ({wanted})"
            out.append(_ev("compiler_match", weights, reason, facts, "kernel_compiler"))
    for backport in affected.backports:
        abi = facts.ubuntu_abi
        if (
            backport.distro == "ubuntu"
            and abi
            and version == backport.kernel
            and abi >= (backport.abi, backport.upload)
        ):
            out.append(
                _ev("backported", weights, f"Ubuntu {abi[0]}.{abi[1]}: {backport.note}", facts, "kernel_version")
            )
    return out


def _cpu_context(bug: Bug, weights: Dict[str, int], facts: HostFacts) -> List[Evidence]:
    affected, out = bug.affected, []
    vendor, family = facts.cpu_vendor, facts.cpu_family
    if vendor and affected.cpu_vendors:
        families = "/".join(_hex(f) for f in affected.cpu_families) or "any"
        outside = vendor not in affected.cpu_vendors or (
            family is not None and bool(affected.cpu_families) and family not in affected.cpu_families
        )
        if outside:
            reason = "the CPU is {} family {}; this bug concerns {} family {}".format(
                vendor, _hex(family), ", ".join(affected.cpu_vendors), families
            )
            out.append(_ev("cpu_outside", weights, reason, facts, "cpu_vendor"))
        elif family is not None or not affected.cpu_families:
            reason = f"the CPU ({vendor} family {_hex(family)}) is of the kind this bug concerns"
            out.append(_ev("cpu_match", weights, reason, facts, "cpu_vendor"))
    verdicts = [(c, c.matches(vendor, family, facts.cpu_model)) for c in bug.triage.cpu]
    matched = [c for c, v in verdicts if v]
    if verdicts and vendor and not matched and all(v is False for _, v in verdicts):
        reason = "the CPU ({} family {} model {}) is none of: {}".format(
            vendor, _hex(family), _hex(facts.cpu_model), "; ".join(c.describe() for c in bug.triage.cpu)
        )
        out.append(_ev("cpu_outside", weights, reason, facts, "cpu_vendor"))
    for c in matched:
        if c.microcode_fixed is not None and facts.microcode is not None:
            below = facts.microcode < c.microcode_fixed
            key = "microcode_below_fix" if below else "microcode_fixed"
            reason = "microcode {:#x} is {} the fixed revision {:#x} for {}".format(
                facts.microcode, "below" if below else "at or above", c.microcode_fixed, c.describe()
            )
            out.append(_ev(key, weights, reason, facts, "microcode"))
        else:
            out.append(_ev("cpu_match", weights, f"the CPU matches {c.describe()}", facts, "cpu_model"))
    return out


def _hex(value: Optional[int]) -> str:
    return "?" if value is None else f"{value:#x}"


def _commands(suspect: Suspect) -> List[str]:
    if suspect.bug is None:
        return list(suspect.rules.next)
    bug = suspect.bug
    out = [f"shakeout check --only {bug.id}"]
    out += [f"shakeout run {probe} --duration 60" for probe in dict.fromkeys(bug.probes)]
    out += list(suspect.rules.next)
    out.append(f"shakeout show {bug.id}")
    return out
