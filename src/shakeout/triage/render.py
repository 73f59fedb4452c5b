"""Triage results for people (text), machines (JSON) and tickets (markdown): pure functions."""

from __future__ import annotations

import io
import json
from typing import Any, Dict, List, Sequence

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding

from shakeout import __version__
from shakeout.results import SCHEMA
from shakeout.triage.matcher import Evidence, SuspectResult, TriageResult
from shakeout.triage.reader import InputStats

FORMATS = ("text", "json", "markdown")
TEXT_WIDTH = 80
SHOWN_LINES = 3
LEVEL_STYLE = {"strong": "bold red", "moderate": "yellow", "weak": "cyan"}


def to_document(result: TriageResult, inputs: Sequence[InputStats]) -> Dict[str, Any]:
    return {
        "schema": SCHEMA,
        "command": "triage",
        "tool_version": __version__,
        "disclaimer": result.disclaimer,
        "inputs": [{"name": s.name, "bytes": s.bytes_read, "lines": result.lines_read.get(s.name, 0)} for s in inputs],
        "notes": result.notes,
        "recognised": result.recognised,
        "hosts": result.hosts,
        "suspects": [s.to_dict() for s in result.suspects],
        "not_indicated": [s.to_dict() for s in result.not_indicated],
    }


def render_json(result: TriageResult, inputs: Sequence[InputStats]) -> str:
    return json.dumps(to_document(result, inputs), indent=2, ensure_ascii=False) + "\n"


def _summary_line(result: TriageResult, inputs: Sequence[InputStats]) -> str:
    lines = sum(result.lines_read.values())
    hosts = ", ".join(f"{name}{' (crashed)' if facts['crashed'] else ''}" for name, facts in result.hosts.items())
    return f"{len(inputs)} input(s), {lines:,} lines; hosts: {hosts or 'none named'}"


def _evidence_header(e: Evidence) -> str:
    times = f" ({e.count} lines)" if e.count > 1 else ""
    return f"{e.weight:+d} {e.reason}{times}"


def _host_text(facts: Dict[str, Any]) -> str:
    cpu = facts["cpu"]
    parts = [
        facts["os"] or "os ?",
        facts["arch"] or "",
        f"kernel {facts['kernel_release']}" if facts["kernel_release"] else "",
        f"built with {facts['kernel_compiler']}" if facts["kernel_compiler"] else "",
        cpu["model_name"] or cpu["vendor"] or "",
        f"microcode {cpu['microcode']}" if cpu["microcode"] else "",
    ]
    return ", ".join(p for p in parts if p)


def render_text(result: TriageResult, inputs: Sequence[InputStats], console: Console) -> None:
    console.print("[bold]shakeout triage[/] — " + escape(_summary_line(result, inputs)))
    for name, facts in result.hosts.items():
        described = _host_text(facts)
        if described != "os ?":
            console.print(f"  {escape(name)}: {escape(described)}")
    console.print(f"[italic]{escape(result.disclaimer)}[/]")
    for note in result.notes:
        _say(console, 0, f"[dim]note: {escape(note)}[/]")
    if not result.suspects:
        console.print(
            "\nNo suspect: nothing in the input looks like a crash shakeout knows. Paste the whole crash "
            "output (with `uname -a`), or run `shakeout check` on the machine."
        )
    for rank, suspect in enumerate(result.suspects, 1):
        _render_suspect(rank, suspect, console)
    if result.not_indicated:
        console.print("\n[bold]Not indicated[/]")
        for s in result.not_indicated:
            against = "; ".join(e.reason for e in s.evidence if e.weight < 0) or "no crash sign of it"
            _say(console, 2, f"• {escape(s.id)} (score {s.score}): {escape(against)}")


def _say(console: Console, indent: int, markup: str) -> None:
    """One paragraph, wrapped lines indented like its first line."""
    console.print(Padding(markup, (0, 0, 0, indent)))


def _render_suspect(rank: int, s: SuspectResult, console: Console) -> None:
    style = LEVEL_STYLE.get(s.level, "none")
    console.print(f"\n[bold]{rank}. {escape(s.id)}[/] — [{style}]{s.level}[/] (score {s.score}, {s.kind})")
    _say(console, 3, escape(s.title))
    console.print("   [bold]Evidence[/]")
    for e in s.evidence:
        _say(console, 5, escape(_evidence_header(e)))
        for ref in e.lines[:SHOWN_LINES]:
            _say(console, 7, f"[dim]{escape(ref.source)}:{ref.line}[/]  {escape(ref.text)}")
    for title, items in (("Would raise it", s.raises), ("Would lower it", s.lowers), ("Next", s.commands)):
        if items:
            console.print(f"   [bold]{title}[/]")
            for item in items:
                _say(console, 5, ("→ " if title == "Next" else "• ") + escape(item))


def render_text_string(result: TriageResult, inputs: Sequence[InputStats], width: int = TEXT_WIDTH) -> str:
    buffer = io.StringIO()
    render_text(result, inputs, Console(file=buffer, width=width, color_system=None, highlight=False))
    return "\n".join(line.rstrip() for line in buffer.getvalue().split("\n"))


def _md_suspect(rank: int, s: SuspectResult) -> List[str]:
    out = [f"### {rank}. `{s.id}` — {s.level} (score {s.score})", "", s.title, "", "**Evidence**", ""]
    for e in s.evidence:
        out.append(f"- {_evidence_header(e)}")
        if e.lines:
            out.append("")
            out += [f"      {ref.source}:{ref.line}  {ref.text}" for ref in e.lines[:SHOWN_LINES]]
            out.append("")
    for title, items in (("Would raise it", s.raises), ("Would lower it", s.lowers)):
        if items:
            out += ["", f"**{title}**", ""] + [f"- {item}" for item in items]
    out += ["", "**Next**", ""] + [f"    {c}" for c in s.commands] + [""]
    return out


def render_markdown(result: TriageResult, inputs: Sequence[InputStats]) -> str:
    out = ["## Crash triage (shakeout)", "", _summary_line(result, inputs), "", f"> {result.disclaimer}", ""]
    for name, facts in result.hosts.items():
        out.append(f"- host `{name}`: {_host_text(facts)}")
    out += [f"- note: {n}" for n in result.notes]
    out.append("")
    if not result.suspects:
        out += ["No suspect: nothing in the input looks like a crash shakeout knows.", ""]
    for rank, suspect in enumerate(result.suspects, 1):
        out += _md_suspect(rank, suspect)
    if result.not_indicated:
        out += ["### Not indicated", ""]
        for s in result.not_indicated:
            against = "; ".join(e.reason for e in s.evidence if e.weight < 0) or "no crash sign of it"
            out.append(f"- `{s.id}` (score {s.score}): {against}")
    return "\n".join(out).rstrip("\n") + "\n"
