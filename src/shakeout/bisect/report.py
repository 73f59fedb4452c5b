"""What `shakeout bisect` and `config-bisect` print: the result on stdout, as text or JSON."""

from __future__ import annotations

import json
import shutil
import textwrap
from typing import Any, Dict, List, Optional

from shakeout import __version__
from shakeout.bisect.pattern import strip_markers
from shakeout.bisect.search import Outcome
from shakeout.results import SCHEMA


def outcome_doc(
    outcome: Outcome, extra: Optional[List[Dict[str, Any]]] = None, command: str = "bisect"
) -> Dict[str, Any]:
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
        "command": command,
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


# What a change is called, in each command's own words.
WORDS = {
    "bisect": {
        "set": "change set",
        "cause": "enabling these changes makes the command fail",
        "all": "every change enabled",
    },
    "config-bisect": {
        "set": "options",
        "cause": "setting these options to BAD's values makes the command fail",
        "all": "BAD's configuration",
    },
}


def render_text(doc: Dict[str, Any]) -> str:
    words = WORDS.get(doc.get("command", "bisect"), WORDS["bisect"])
    out: List[str] = []
    for n, cs in enumerate(doc["change_sets"], 1):
        out.append(f"--- {words['set']} #{n} ({words['cause']})")
        out.extend(strip_markers(line) for line in cs["lines"])
        out.append("---")
        rate = cs["failure_rate_with_set"]
        out.append(
            _wrapped(
                "confidence {:.4f} that this is the answer: with only these, the command failed {} of {} trials".format(
                    cs["confidence"], rate["failures"], rate["trials"]
                )
            )
        )
        if cs.get("really_tested"):
            out.append(
                "after normalisation, the failing configuration differed from GOOD in: "
                + ", ".join(cs["really_tested"])
            )
    base = doc["all_enabled"]
    k = doc["passes_needed_per_decision"]
    out.append(
        _wrapped(
            f"{doc['trials']} trials; with {words['all']} the command failed {base['failures']} of {base['trials']} "
            f"times, so a configuration counted as passing only after {k} pass{'es' if k != 1 else ''} in a row "
            "(passes needed per decision)"
        )
    )
    out.extend(_wrapped("note: " + n) for n in doc["notes"])
    return "\n".join(out) + "\n"


def _wrapped(line: str) -> str:
    """Our own sentences wrap at the terminal's width (COLUMNS, else 80); a target's lines do not."""
    return textwrap.fill(line, shutil.get_terminal_size((80, 24)).columns, break_on_hyphens=False)


def render(doc: Dict[str, Any], fmt: str) -> str:
    return json.dumps(doc, indent=2) + "\n" if fmt == "json" else render_text(doc)
