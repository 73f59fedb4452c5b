"""Renderers: RunReport -> text | json | junit | prometheus | ocp, and atomic output files.

Each renderer is a pure function of the report. Text is for people (rich tables, colour
only on a terminal); the other formats are for machines and are stable. Output files are
written by shakeout.outputs (devices and FIFOs in place, regular files atomically).
"""

from __future__ import annotations

from typing import Callable, Dict

from shakeout.errors import UsageError
from shakeout.outputs import check_output_path, write_output
from shakeout.report.jsonfmt import render_json
from shakeout.report.junit import render_junit
from shakeout.report.ocp import render_ocp
from shakeout.report.prom import render_prometheus
from shakeout.report.text import render_text_plain
from shakeout.results import RunReport

FORMATS: Dict[str, Callable[[RunReport], str]] = {
    "text": render_text_plain,
    "json": render_json,
    "junit": render_junit,
    "prometheus": render_prometheus,
    "ocp": render_ocp,
}


def check_format(name: str) -> str:
    if name not in FORMATS:
        raise UsageError("unknown format '{}' (use one of: {})".format(name, ", ".join(FORMATS)))
    return name


__all__ = ["FORMATS", "check_format", "check_output_path", "write_atomically"]

write_atomically = write_output  # the name the commands use
