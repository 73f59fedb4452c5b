"""JSON output: schema "shakeout/1" (see README, Formats)."""

from __future__ import annotations

import json

from shakeout.results import RunReport


def render_json(report: RunReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False) + "\n"
