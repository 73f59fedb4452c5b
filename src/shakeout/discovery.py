"""What `list`, `show` and `probes` tell: finding a subject by bug, probe or CVE id, and
the JSON documents of the catalog and the probes (the text renderers are in report/text.py).

`show` answers whatever id a newcomer has at hand: the bug id from a verdict, the probe id
from a table, or the CVE from an advisory. Every document carries the report schema.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from shakeout.catalog import Bug, first_mitigation, fix_summary
from shakeout.errors import UsageError
from shakeout.probespec import ProbeOption, ProbeSpec
from shakeout.results import SCHEMA

CVE_ID = re.compile(r"CVE-[0-9]{4}-[0-9]{4,}", re.ASCII | re.IGNORECASE)


@dataclass
class Subject:
    """What `show` found: one or more bugs (a bug or CVE id), or a probe and the bugs it covers."""

    query: str
    found_as: str  # "bug", "probe" or "cve"
    bugs: List[Bug]
    probe: Optional[ProbeSpec] = None


def bugs_of_probe(probe_id: str, bugs: List[Bug]) -> List[Bug]:
    return [b for b in bugs if probe_id in b.probes]


def find_subject(query: str, bugs: Dict[str, Bug], probes: Dict[str, ProbeSpec]) -> Subject:
    """The bug, probe or CVE `query` names, or a UsageError listing what exists."""
    if query in bugs:
        return Subject(query, "bug", [bugs[query]])
    if query in probes:
        return Subject(query, "probe", bugs_of_probe(query, list(bugs.values())), probes[query])
    if CVE_ID.fullmatch(query):
        named = [b for b in bugs.values() if query.upper() in (c.upper() for c in b.cve)]
        if named:
            return Subject(query, "cve", named)
        cves = sorted({c for b in bugs.values() for c in b.cve})
        raise UsageError(f"no catalog entry names {query} (CVEs in the catalog: {', '.join(cves) or 'none'})")
    raise UsageError(
        f"'{query}' is not a bug, probe or CVE id (bugs: {', '.join(bugs)}; probes: {', '.join(probes)}; "
        "see shakeout list and shakeout probes)"
    )


def bug_doc(bug: Bug) -> Dict[str, Any]:
    a = bug.affected
    return {
        "id": bug.id,
        "kind": bug.kind,
        "title": bug.title,
        "cve": list(bug.cve),
        "probes": list(bug.probes),
        "summary": bug.summary,
        "mechanism": bug.mechanism,
        "affected": {
            "os": list(a.os),
            "arch": list(a.arch),
            "cpu_vendors": list(a.cpu_vendors),
            "cpu_families": list(a.cpu_families),
            "cpu_features": list(a.cpu_features),
            "kernel": [{"introduced": str(r.introduced), "fixed": str(r.fixed) if r.fixed else None} for r in a.kernel],
            "kernel_compiler": (
                {"name": a.kernel_compiler.name, "min_major": a.kernel_compiler.min_major}
                if a.kernel_compiler
                else None
            ),
            "notes": a.notes,
        },
        "fix": fix_summary(bug),
        "fixed_by": bug.fixed_by,
        "first_mitigation": first_mitigation(bug),
        "mitigations": [{"what": m.what, "command": m.command, "buys": m.buys} for m in bug.mitigations],
        "references": [{"title": r.title, "url": r.url} for r in bug.references],
        "meaning": bug.meaning,
    }


def option_doc(option: ProbeOption) -> Dict[str, Any]:
    """Every declared fact of an option (name, help, choices, and whatever else ProbeOption
    declares, such as a range or default), without the validating functions."""
    doc: Dict[str, Any] = {}
    for f in dataclasses.fields(option):
        value = getattr(option, f.name)
        if callable(value):
            continue
        doc[f.name] = list(value) if isinstance(value, tuple) else value
    return doc


def probe_doc(spec: ProbeSpec, bugs: List[Bug]) -> Dict[str, Any]:
    needs = spec.needs
    return {
        "id": spec.id,
        "summary": spec.summary,
        "needs": {"os": list(needs.os), "arch": list(needs.arch), "min_cpus": needs.min_cpus, "root": needs.root},
        "default_duration_s": spec.default_duration_s,
        "exposure": spec.exposure,
        "min_exposures": spec.min_exposures,
        "options": [option_doc(o) for o in spec.user_options()],
        "injections": [{"name": i.name, "description": i.description} for i in spec.injections],
        "bugs": [b.id for b in bugs_of_probe(spec.id, bugs)],
    }


def list_doc(bugs: List[Bug]) -> Dict[str, Any]:
    return {"schema": SCHEMA, "command": "list", "bugs": [bug_doc(b) for b in bugs]}


def show_doc(subject: Subject, bugs: List[Bug]) -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        "schema": SCHEMA,
        "command": "show",
        "query": subject.query,
        "found_as": subject.found_as,
        "bugs": [bug_doc(b) for b in subject.bugs],
    }
    if subject.probe is not None:
        doc["probe"] = probe_doc(subject.probe, bugs)
    return doc


def probes_doc(specs: List[ProbeSpec], bugs: List[Bug]) -> Dict[str, Any]:
    return {"schema": SCHEMA, "command": "probes", "probes": [probe_doc(s, bugs) for s in specs]}
