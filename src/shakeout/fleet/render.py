"""merge's output: text for a terminal, JSON for machines, markdown for a ticket.

Three functions over one FleetSummary; what a reader needs to trust the numbers (skipped
inputs, duplicate hosts, mixed tool versions) is said in every format.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from shakeout.fleet.merge import ALARMING, CLEAN, NOT_ASSESSED, BugSummary, FleetSummary, Separator

SHOWN_DUPLICATES = 10  # text and markdown name this many duplicate hosts; JSON names all


def _order(kind: str) -> List[str]:
    return [ALARMING[kind], CLEAN[kind], "unknown", "not-applicable", NOT_ASSESSED]


def counts_phrase(bug: BugSummary) -> str:
    return ", ".join(
        f"{bug.counts.get(v, 0)} {v}" for v in _order(bug.kind) if bug.counts.get(v, 0) or v != NOT_ASSESSED
    )


def separator_phrase(bug: BugSummary, s: Separator) -> str:
    exact = " (separates exactly)" if s.exact else ""
    return (
        f"{ALARMING[bug.kind]} on {s.alarming_with}/{s.hosts_with} hosts with {s.attribute} {s.value}, "
        f"{s.alarming_others}/{s.hosts_others} others (p = {s.p_value:.2g}){exact}"
    )


def notes(summary: FleetSummary) -> List[str]:
    """What the reader must know about the inputs, one sentence each."""
    out: List[str] = []
    if summary.rejected:
        out.append(f"{len(summary.rejected)} input(s) skipped (listed on stderr and in the JSON output)")
    if summary.duplicates:
        dropped = sum(len(d.dropped) for d in summary.duplicates)
        shown = ", ".join(d.hostname for d in summary.duplicates[:SHOWN_DUPLICATES])
        more = (
            f" and {len(summary.duplicates) - SHOWN_DUPLICATES} more"
            if len(summary.duplicates) > SHOWN_DUPLICATES
            else ""
        )
        out.append(
            f"{len(summary.duplicates)} host(s) sent more than one report; the newest of each was kept "
            f"and {dropped} older report(s) ignored: {shown}{more}"
        )
    if len(summary.versions) > 1:
        listed = ", ".join(f"{v} ({n} hosts)" for v, n in summary.versions.items())
        out.append(
            f"reports of different shakeout versions were merged: {listed}; "
            "a bug one version does not know counts as 'not assessed' on its hosts"
        )
    return out


def _decided_note(bug: BugSummary) -> str:
    return f"only hosts with a decided verdict ({ALARMING[bug.kind]} or {CLEAN[bug.kind]}) are compared"


def render_text(summary: FleetSummary) -> str:
    lines = [f"shakeout merge: {summary.hosts} hosts from {summary.reports_read} reports"]
    lines += [f"note: {n}" for n in notes(summary)]
    for bug in summary.bugs:
        lines.append("")
        lines.append(f"{bug.bug_id} ({bug.kind}): {counts_phrase(bug)}")
        if bug.alarming and not bug.separators:
            lines.append("  no host attribute separates these hosts (" + _decided_note(bug) + ")")
        for s in bug.separators:
            lines.append("  " + separator_phrase(bug, s))
    return "\n".join(lines) + "\n"


def render_markdown(summary: FleetSummary) -> str:
    lines = [f"## shakeout merge: {summary.hosts} hosts", ""]
    lines += [f"> {n}" for n in notes(summary)]
    if summary.rejected or summary.duplicates or len(summary.versions) > 1:
        lines.append("")
    lines.append(
        "| bug | kind | " + " | ".join(["alarming", "clean", "unknown", "not applicable", NOT_ASSESSED]) + " |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for bug in summary.bugs:
        cells = [str(bug.counts.get(v, 0)) for v in _order(bug.kind)]
        lines.append(f"| `{bug.bug_id}` | {bug.kind} | " + " | ".join(cells) + " |")
    for bug in summary.bugs:
        if not bug.alarming:
            continue
        lines += ["", f"### `{bug.bug_id}`: {bug.alarming} host(s) {ALARMING[bug.kind]}", ""]
        if not bug.separators:
            lines.append(f"No host attribute separates these hosts ({_decided_note(bug)}).")
        lines += [f"- {separator_phrase(bug, s)}" for s in bug.separators]
    return "\n".join(lines) + "\n"


def _separator_dict(s: Separator) -> Dict[str, Any]:
    return {
        "attribute": s.attribute,
        "value": s.value,
        "alarming_with": s.alarming_with,
        "hosts_with": s.hosts_with,
        "alarming_others": s.alarming_others,
        "hosts_others": s.hosts_others,
        "p_value": s.p_value,
        "exact": s.exact,
    }


def to_dict(summary: FleetSummary) -> Dict[str, Any]:
    return {
        "schema": "shakeout-merge/1",
        "hosts": summary.hosts,
        "reports_read": summary.reports_read,
        "exit_status": summary.exit_status,
        "notes": notes(summary),
        "tool_versions": summary.versions,
        "skipped": [{"source": r.source, "reason": r.reason} for r in summary.rejected],
        "duplicates": [
            {"hostname": d.hostname, "kept": d.kept, "kept_started_at": d.kept_started_at, "ignored": list(d.dropped)}
            for d in summary.duplicates
        ],
        "bugs": [
            {
                "id": b.bug_id,
                "kind": b.kind,
                "counts": {v: b.counts.get(v, 0) for v in _order(b.kind)},
                "separators": [_separator_dict(s) for s in b.separators],
            }
            for b in summary.bugs
        ],
    }


def render_json(summary: FleetSummary) -> str:
    return json.dumps(to_dict(summary), indent=2) + "\n"


MERGE_FORMATS = {"text": render_text, "json": render_json, "markdown": render_markdown}
