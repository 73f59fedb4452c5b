"""What `shakeout bisect` and `config-bisect` print: the result on stdout, as text or JSON."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from shakeout import __version__
from shakeout.bisect.pattern import strip_markers
from shakeout.bisect.search import Outcome
from shakeout.results import SCHEMA


def outcome_doc(outcome: Outcome, extra: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    sets = []
    for i, cs in enumerate(outcome.change_sets):
        entry: Dict[str, Any] = {
            "ids": [f"{x:#018x}" for x in cs.ids],
            "pattern": cs.pattern,
            "lines": cs.lines,
            "confidence": round(cs.confidence, 6),
            "failure_rate_with_set": {"failures": cs.failure_rate.fails, "trials": cs.failure_rate.trials},
        }
        if extra and i < len(extra):
            entry.update(extra[i])
        sets.append(entry)
    return {
        "schema": SCHEMA,
        "command": "bisect",
        "tool_version": __version__,
        "change_sets": sets,
        "trials": outcome.trials,  # every run of the target, the report runs included
        "report_runs": outcome.report_runs,  # verbose runs made only for report lines (usually none)
        "all_enabled": {"failures": outcome.baseline.fails, "trials": outcome.baseline.trials},
        "passes_needed_per_decision": outcome.passes_needed,
        "configurations": [
            {"pattern": p, "failures": ev.fails, "trials": ev.trials} for p, ev in outcome.evidence.items()
        ],
        "notes": outcome.notes,
    }


def render_text(doc: Dict[str, Any]) -> str:
    out: List[str] = []
    for n, cs in enumerate(doc["change_sets"], 1):
        out.append(f"--- change set #{n} (enabling changes causes failure)")
        out.extend(strip_markers(line) for line in cs["lines"])
        out.append("---")
        rate = cs["failure_rate_with_set"]
        out.append(
            "confidence {:.4f}: failed {} of {} trials with this set enabled".format(
                cs["confidence"], rate["failures"], rate["trials"]
            )
        )
        for key in ("really_tested",):
            if cs.get(key):
                out.append(
                    "the failing configuration, after normalisation, differed from GOOD in: " + ", ".join(cs[key])
                )
    out.append(
        "{} trials; all changes enabled failed {} of {}; passes needed per decision: {}".format(
            doc["trials"],
            doc["all_enabled"]["failures"],
            doc["all_enabled"]["trials"],
            doc["passes_needed_per_decision"],
        )
    )
    out.extend("note: " + n for n in doc["notes"])
    return "\n".join(out) + "\n"


def render(doc: Dict[str, Any], fmt: str) -> str:
    return json.dumps(doc, indent=2) + "\n" if fmt == "json" else render_text(doc)
