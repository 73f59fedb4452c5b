"""The pattern across hosts: per-bug counts and the host attributes that separate alarming hosts.

Method. Each host counts once: when a host sent several reports, the one whose check
started last wins (said, with the others named). For every bug, hosts are counted by
verdict; a host whose report does not mention the bug (an older tool version, `--only`)
counts as "not assessed". For every bug that is vulnerable (a defect) or present (a
hazard) on some host, only hosts with a decided verdict take part (vulnerable/not-vulnerable,
present/absent): unknown and not-applicable say nothing about the attributes. For each
attribute value v (microcode 0x0830104d, kernel release 6.1.0-18, ...), with n_v decided
hosts having v of which k_v are alarming, and the other hosts' j alarming of m:

    "vulnerable on k_v/n_v hosts with microcode 0x0830104d, j/m others"

is listed when k_v/n_v > j/m, ranked by the one-sided Fisher exact test's p-value (the
chance that the k_v alarming hosts fall on v at least that often if the attribute did not
matter). It separates "exactly" when every alarming host has v and no clean host does.

Invariants: merge is a pure function of the parsed reports (the same reports in any order
give the same result); rejected inputs never count as hosts.

References: R. A. Fisher, "The Design of Experiments" (1935), the lady tasting tea: the
hypergeometric tail used here.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

from shakeout.fleet.reports import HostReport, Rejected

ALARMING = {"defect": "vulnerable", "hazard": "present"}
CLEAN = {"defect": "not-vulnerable", "hazard": "absent"}
NOT_ASSESSED = "not assessed"
MAX_SEPARATORS = 5

# merge's exit status (contract): bits, so that both facts survive together.
EXIT_MERGED = 0
EXIT_VULNERABLE_BIT = 1  # a defect is vulnerable on some host
EXIT_SKIPPED_BIT = 4  # some inputs were skipped (each named on stderr)


@dataclass(frozen=True)
class Duplicate:
    hostname: str
    kept: str  # source of the newest report
    kept_started_at: str
    dropped: Tuple[str, ...]


@dataclass(frozen=True)
class Separator:
    attribute: str
    value: str
    alarming_with: int  # k_v
    hosts_with: int  # n_v
    alarming_others: int  # j
    hosts_others: int  # m
    p_value: float

    @property
    def exact(self) -> bool:
        return self.alarming_with == self.hosts_with and self.alarming_others == 0


@dataclass
class BugSummary:
    bug_id: str
    kind: str
    counts: Dict[str, int]  # verdict (or "not assessed") -> hosts
    separators: List[Separator] = field(default_factory=list)

    @property
    def alarming(self) -> int:
        return self.counts.get(ALARMING[self.kind], 0)


@dataclass
class FleetSummary:
    hosts: int
    reports_read: int
    rejected: List[Rejected]
    duplicates: List[Duplicate]
    versions: Dict[str, int]  # tool version -> hosts
    bugs: List[BugSummary]

    @property
    def exit_status(self) -> int:
        status = EXIT_MERGED
        if any(b.kind == "defect" and b.alarming for b in self.bugs):
            status |= EXIT_VULNERABLE_BIT
        if self.rejected:
            status |= EXIT_SKIPPED_BIT
        return status


def newest_per_host(reports: Sequence[HostReport]) -> Tuple[List[HostReport], List[Duplicate]]:
    """One report per hostname: the latest start time wins; on a tie, the one read last."""
    by_host: Dict[str, List[Tuple[int, HostReport]]] = defaultdict(list)
    for order, report in enumerate(reports):
        by_host[report.hostname].append((order, report))
    kept: List[HostReport] = []
    duplicates: List[Duplicate] = []
    for hostname in sorted(by_host):
        ranked = sorted(by_host[hostname], key=lambda pair: (pair[1].started_at, pair[0]), reverse=True)
        newest = ranked[0][1]
        kept.append(newest)
        if len(ranked) > 1:
            dropped = tuple(r.source for _, r in ranked[1:])
            duplicates.append(Duplicate(hostname, newest.source, newest.started_at.isoformat(), dropped))
    return kept, duplicates


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_upper_tail(k: int, n: int, alarming: int, total: int) -> float:
    """P(X >= k) for X ~ Hypergeometric(total hosts, alarming hosts, n drawn): one-sided Fisher."""
    top = min(n, alarming)
    base = _log_choose(total, n)
    p = 0.0
    for x in range(k, top + 1):
        term = math.exp(_log_choose(alarming, x) + _log_choose(total - alarming, n - x) - base)
        p += term
        if term < p * 1e-15 and x > k:  # past the mode the terms only shrink
            break
    return min(1.0, p)


def separators(decided: Sequence[Tuple[HostReport, bool]]) -> List[Separator]:
    """Attribute values over-represented among alarming hosts, best (smallest p) first."""
    total = len(decided)
    alarming = sum(1 for _, is_alarming in decided if is_alarming)
    groups: Dict[Tuple[str, str], List[int]] = defaultdict(lambda: [0, 0])
    for report, is_alarming in decided:
        for pair in report.attributes:
            group = groups[pair]
            group[0] += 1
            group[1] += is_alarming
    found: List[Separator] = []
    for (attribute, value), (n_with, k_with) in groups.items():
        m_others, j_others = total - n_with, alarming - k_with
        if k_with == 0 or m_others == 0 or k_with * m_others <= j_others * n_with:
            continue
        p = fisher_upper_tail(k_with, n_with, alarming, total)
        found.append(Separator(attribute, value, k_with, n_with, j_others, m_others, p))
    found.sort(key=lambda s: (s.p_value, -s.alarming_with, s.attribute, s.value))
    return found[:MAX_SEPARATORS]


def _bug_kinds(hosts: Sequence[HostReport]) -> Dict[str, str]:
    kinds: Dict[str, str] = {}
    for report in hosts:
        for bug in report.bugs:
            kinds.setdefault(bug.bug_id, bug.kind)
    return dict(sorted(kinds.items()))


def summarise_bug(
    bug_id: str, kind: str, hosts: Sequence[HostReport], verdicts: Sequence[Dict[str, str]]
) -> BugSummary:
    """Counts and separators for one bug; verdicts[i] maps bug id -> verdict for hosts[i]."""
    counts: Counter[str] = Counter()
    decided: List[Tuple[HostReport, bool]] = []
    for report, by_bug in zip(hosts, verdicts):
        verdict = by_bug.get(bug_id)
        counts[verdict or NOT_ASSESSED] += 1
        if verdict in (ALARMING[kind], CLEAN[kind]):
            decided.append((report, verdict == ALARMING[kind]))
    summary = BugSummary(bug_id, kind, dict(counts))
    if summary.alarming:
        summary.separators = separators(decided)
    return summary


def merge(loaded: Sequence[object]) -> FleetSummary:
    """Merge parsed reports (HostReport) and rejections (Rejected) into one fleet summary."""
    reports = [r for r in loaded if isinstance(r, HostReport)]
    rejected = [r for r in loaded if isinstance(r, Rejected)]
    hosts, duplicates = newest_per_host(reports)
    versions = Counter(r.tool_version for r in hosts)
    verdicts = [{b.bug_id: b.verdict for b in report.bugs} for report in hosts]
    bugs = [summarise_bug(bug_id, kind, hosts, verdicts) for bug_id, kind in _bug_kinds(hosts).items()]
    return FleetSummary(len(hosts), len(reports), rejected, duplicates, dict(sorted(versions.items())), bugs)
