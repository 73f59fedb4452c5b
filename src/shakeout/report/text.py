"""Text for people: rich tables on a terminal, the same tables without colour in files."""

from __future__ import annotations

import io
import json
import os
import textwrap
from typing import TYPE_CHECKING, Any, Dict, List

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shakeout.catalog import Bug
from shakeout.host import Host, host_summary
from shakeout.outcome import verdict_line
from shakeout.results import BugVerdict, ProbeResult, RunReport, SelftestResult

if TYPE_CHECKING:  # the analysis package loads capstone: only the vdso command needs it
    from shakeout.vdso import VdsoReport

# Below this width a table cannot be read (the reason column shrinks to a few characters):
# each bug and probe becomes a block of its own, and long text wraps instead.
STACK_BELOW_COLUMNS = 110
EVIDENCE_CHARS = 600

# The words of the report, explained once, where the reader meets them.
TERMS = (
    "exposures: events that opened the bug's window (shakeout show PROBE says what one is); "
    "p bound (95 %): after n exposures without corruption, the chance of corruption per exposure "
    "is below 3/n at 95 % confidence; a defect is a bug of this platform, a hazard is documented "
    "behaviour that programs must avoid."
)

VERDICT_STYLE = {
    "vulnerable": "bold red",
    "not-vulnerable": "green",
    "not-applicable": "dim",
    "unknown": "yellow",
    "present": "yellow",
    "absent": "green",
    "reproduced (hazard)": "yellow",
    "inconclusive": "yellow",
    "pass": "green",
    "fail": "bold red",
    "skip": "dim",
    "error": "yellow",
}


def _styled(verdict: str) -> str:
    return "[{}]{}[/]".format(VERDICT_STYLE.get(verdict, ""), verdict)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _bound(result: ProbeResult) -> str:
    return f"< {result.bound:.2g}" if result.bound is not None else "-"


def _host_line(host: Dict[str, Any]) -> str:
    cpu = host.get("cpu", {})
    return "{} {} · kernel {} (built with {}) · {} {} · {} CPUs · vector: {}".format(
        host.get("os"),
        host.get("arch"),
        host.get("kernel_release"),
        host.get("kernel_compiler") or "unknown compiler",
        cpu.get("vendor"),
        cpu.get("model_name"),
        host.get("cpus"),
        ", ".join(host.get("vector_extensions", [])) or "none",
    )


def bug_table(bugs: List[BugVerdict]) -> Table:
    table = Table(title="Known bugs", title_justify="left", expand=True)
    table.add_column("bug", no_wrap=True)
    table.add_column("kind")
    table.add_column("verdict", no_wrap=True)
    table.add_column("why", ratio=1, overflow="fold")
    for b in bugs:
        table.add_row(b.bug_id, b.kind, _styled(b.verdict), escape(b.reason))
    return table


def hazard_probes(report: RunReport) -> List[str]:
    """Probes whose every bug is a hazard: a reproduction by them is `reproduced (hazard)`."""
    kinds: Dict[str, List[str]] = {}
    for b in report.bugs:
        for p in b.evidence.get("probes", []):
            kinds.setdefault(str(p.get("probe")), []).append(b.kind)
    return [name for name, ks in kinds.items() if ks and all(k == "hazard" for k in ks)]


def shown_verdict(result: ProbeResult, hazards: List[str]) -> str:
    return "reproduced (hazard)" if result.verdict == "fail" and result.name in hazards else result.verdict


def _probe_note(p: ProbeResult) -> str:
    if p.verdict != "pass":
        return p.reason
    return ", ".join(f"{k} {v:,.0f}" if abs(v) >= 10 else f"{k} {v:.2f}" for k, v in _numeric(p.metrics)[:4])


def _numeric(metrics: Dict[str, Any]) -> List[Any]:
    return [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def probe_table(probes: List[ProbeResult], hazards: List[str]) -> Table:
    table = Table(title="Probes", title_justify="left", expand=True)
    for name, justify in (
        ("probe", "left"),
        ("verdict", "left"),
        ("iterations", "right"),
        ("exposures", "right"),
        ("time", "right"),
        ("p bound (95 %)", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("note", ratio=1, overflow="fold")
    for p in probes:
        note = _probe_note(p)
        table.add_row(
            escape(p.name),
            _styled(shown_verdict(p, hazards)),
            f"{p.iterations:,}",
            f"{p.exposures:,}",
            f"{p.elapsed_s:.1f} s",
            _bound(p),
            escape(note),
        )
    return table


def _evidence_lines(result: ProbeResult) -> List[str]:
    lines = []
    for sample in (result.evidence.get("samples") or [])[:1]:
        for reg in sample.get("registers", [])[:4]:
            lines.append("  {:<6} expected {}".format(str(reg.get("register")), reg.get("expected")))
            lines.append("  {:<6} observed {}  ({})".format("", reg.get("observed"), reg.get("source", "?")))
    if not lines and result.evidence:
        text = json.dumps(result.evidence)
        cut = f" … (cut at {EVIDENCE_CHARS} of {len(text):,} characters; --format json has all of it)"
        lines.append("  " + (text[:EVIDENCE_CHARS] + cut if len(text) > EVIDENCE_CHARS else text))
    return lines


def render_report(report: RunReport, console: Console) -> None:
    console.print(f"[bold]shakeout {report.command}[/] on {escape(_host_line(report.host))}")
    if report.vm:
        vm = report.vm
        notes = "".join("; " + n for n in vm.get("notes", []))
        line = (
            f"guest: {vm['kernel']} under QEMU ({vm['accel']}, {vm['cpus']} CPUs, {vm['memory']}), "
            f"{vm['boot_outcome']} after {vm['elapsed_s']:.1f} s{notes}"
        )
        console.print(escape(line), style="dim")
    hazards = hazard_probes(report)
    # selftest: every run is summarised by the selftest table below; --format json has each in full
    detailed = [] if report.command == "selftest" else report.probes
    if console.width < STACK_BELOW_COLUMNS:
        _stacked(report.bugs, detailed, hazards, console)
    else:
        if report.bugs:
            console.print(bug_table(report.bugs))
        if detailed:
            console.print(probe_table(detailed, hazards))
    if detailed:
        paragraph(console, TERMS, style="dim")
    for b in report.bugs:
        if b.verdict == "present" and b.meaning:
            console.print(f"[yellow]hazard present: {escape(b.bug_id)}[/] — {escape(b.meaning)}")
    for p in detailed:
        if p.verdict == "fail" and p.name not in hazards:
            console.print(f"[bold red]Evidence from {escape(p.name)}[/]: {escape(p.reason)}")
            for line in _evidence_lines(p):
                console.print(escape(line), highlight=False)
        if p.verdict == "error" and p.stderr_tail:
            console.print(f"[yellow]{escape(p.name)} stderr (last lines):[/]")
            for line in p.stderr_tail[-5:]:
                console.print("  " + escape(line), highlight=False)
    if report.selftests:
        console.print(selftest_table(report.selftests))
        console.print(escape(selftest_count(report.selftests)))
    console.print(f"finished in {report.elapsed_s:.1f} s", style="dim")
    if report.exit_status is not None:
        console.print(escape(verdict_line(report)), style="bold" if report.exit_status else "")


def selftest_table(selftests: List[SelftestResult]) -> Table:
    table = Table(title="Selftest", title_justify="left", expand=True)
    for col in ("probe", "fault", "result", "detected after"):
        table.add_column(col, no_wrap=True)
    table.add_column("evidence checked", ratio=1, overflow="fold")
    for s in selftests:
        if s.not_applicable:
            result = "[dim]not applicable[/]"
        elif not s.ran:
            result = "[yellow]could not run[/]"
        elif s.control:
            result = "[green]clean[/]" if s.caught else "[bold red]FALSE ALARM[/]"
        else:
            result = "[green]caught[/]" if s.caught else "[bold red]MISSED[/]"
        ttd = f"{s.time_to_detect_s:.3f} s" if s.time_to_detect_s is not None and not s.control else "-"
        fault = "none (control run)" if s.control else s.injection
        table.add_row(escape(s.probe_id), escape(fault), result, ttd, escape(s.reason))
    return table


def selftest_count(selftests: List[SelftestResult]) -> str:
    faults = [s for s in selftests if not s.control]
    controls = [s for s in selftests if s.control]
    caught = sum(1 for s in faults if s.ok)
    clean = sum(1 for s in controls if s.ok)
    not_run = sum(1 for s in selftests if not s.ran and not s.not_applicable)
    not_applicable = sum(1 for s in selftests if s.not_applicable)
    tail = f"; {not_run} could not run here" if not_run else ""
    tail += f"; {not_applicable} not applicable here (the probe skips on this machine)" if not_applicable else ""
    return f"{caught}/{len(faults)} faults caught, {clean}/{len(controls)} control runs clean{tail}"


def paragraph(console: Console, text: str, indent: int = 0, hang: int = 0, style: str = "") -> None:
    """Plain text wrapped at the console's width (no trailing padding), `indent` spaces in and
    continuation lines `hang` more; a word longer than a line is folded, never cut."""
    width = max(20, console.width)
    lead = " " * indent
    for par in text.split("\n"):
        wrapped = textwrap.fill(
            par, width, initial_indent=lead, subsequent_indent=lead + " " * hang, break_on_hyphens=False
        )
        console.print(wrapped or "", markup=False, highlight=False, soft_wrap=True, style=style or None)


def _stacked(bugs: List[BugVerdict], probes: List[ProbeResult], hazards: List[str], console: Console) -> None:
    """One block per bug and per probe, every text wrapped in full (narrow terminals, 80 columns)."""
    if bugs:
        console.print("[bold]Known bugs[/]")
    for b in bugs:
        console.print(f"{escape(b.bug_id)} ({b.kind}): {_styled(b.verdict)}")
        paragraph(console, b.reason, 2)
    if probes:
        console.print("[bold]Probes[/]")
    for p in probes:
        facts = [_count(p.iterations, "iteration"), _count(p.exposures, "exposure"), f"{p.elapsed_s:.1f} s"]
        if p.bound is not None:
            facts.append(f"p bound {_bound(p)}")
        console.print(f"{escape(p.name)}: {_styled(shown_verdict(p, hazards))} · " + " · ".join(facts))
        note = _probe_note(p)
        if note:
            paragraph(console, note, 2)


PLAIN_WIDTH = 120


def plain_console(buffer: io.StringIO) -> Console:
    return Console(file=buffer, width=PLAIN_WIDTH, color_system=None, force_terminal=False, highlight=False)


def stdout_console() -> Console:
    """Colour and the terminal's width on a terminal; a fixed, readable width elsewhere."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=PLAIN_WIDTH)
    return console


def render_text_plain(report: RunReport) -> str:
    buffer = io.StringIO()
    render_report(report, plain_console(buffer))
    return buffer.getvalue()


def render_catalog_list(bugs: List[Bug], console: Console) -> None:
    if console.width < STACK_BELOW_COLUMNS:
        for bug in bugs:
            console.print(f"[bold]{escape(bug.id)}[/] ({bug.kind})", highlight=False)
            paragraph(console, bug.title, 2, 2)
            paragraph(console, f"CVE: {', '.join(bug.cve) or '-'}; probes: {', '.join(bug.probes) or '-'}", 2, 2)
        return
    table = Table(title="Catalog", title_justify="left", expand=True)
    for col in ("id", "kind", "cve", "probes"):
        table.add_column(col, no_wrap=True)
    table.add_column("title", ratio=1, overflow="fold")
    for b in bugs:
        table.add_row(b.id, b.kind, ", ".join(b.cve) or "-", ", ".join(b.probes), escape(b.title))
    console.print(table)


def reflow(text: str) -> str:
    """Catalog prose is wrapped in its TOML file: join its lines so that the terminal wraps
    it at its own width (a blank line still separates paragraphs)."""
    return "\n\n".join(" ".join(par.split()) for par in text.split("\n\n"))


def render_bug(bug: Bug, console: Console) -> None:
    console.print(f"[bold]{bug.id}[/] — {escape(bug.title)}")
    console.print(
        "kind: {}   CVE: {}   probes: {}".format(bug.kind, ", ".join(bug.cve) or "none", ", ".join(bug.probes))
    )
    console.print("\n[bold]Summary[/]")
    paragraph(console, reflow(bug.summary))
    console.print("\n[bold]Mechanism[/]")
    paragraph(console, reflow(bug.mechanism))
    a = bug.affected
    console.print("\n[bold]Affected[/]")
    console.print("  os: {}; arch: {}".format(", ".join(a.os), ", ".join(a.arch)))
    if a.cpu_vendors or a.cpu_families or a.cpu_features:
        console.print(
            "  cpu: {}".format(
                "; ".join(
                    filter(
                        None,
                        [
                            ", ".join(a.cpu_vendors),
                            ", ".join(f"family {_family(f)}" for f in a.cpu_families),
                            "features " + ", ".join(a.cpu_features) if a.cpu_features else "",
                        ],
                    )
                )
            )
        )
    for r in a.kernel:
        console.print(f"  kernel: {r}")
    for signature in a.cpu_signatures:
        console.print(f"  cpu signature: {escape(str(signature))}")
    if a.msr_workaround:
        w = a.msr_workaround
        console.print(f"  worked around by MSR {w.address:#x} bit {w.bit} set on every CPU: {escape(w.what)}")
    if a.needs_smt:
        console.print("  only with SMT (hyper-threading) active")
    if a.kernel_compiler:
        console.print(f"  only kernels built with {a.kernel_compiler.name} {a.kernel_compiler.min_major} or later")
    if a.notes:
        paragraph(console, reflow(a.notes), 2)
    fixed = bug.fixed_by
    if fixed:
        console.print("\n[bold]Fixed by[/]")
        if fixed.get("versions"):
            console.print("  versions: " + ", ".join(fixed["versions"]))
        for c in fixed.get("commits", []):
            paragraph(console, "commit {} {}".format(c["id"], c.get("title", "")), 2, 2)
        for c in fixed.get("introduced_by", []):
            paragraph(console, "introduced by {} {}".format(c["id"], c.get("title", "")), 2, 2)
    if bug.mitigations:
        console.print("\n[bold]Mitigations[/]")
        for m in bug.mitigations:
            paragraph(console, f"• {m.what}: {m.command}", 2, 2)
            paragraph(console, reflow(m.buys), 4)
    console.print("\n[bold]References[/]")
    for ref in bug.references:
        paragraph(console, f"• {ref.title} — {ref.url}", 2, 2)


def _family(value: int) -> str:
    """A CPU family or model as /proc/cpuinfo users know it: decimal, hex in brackets."""
    return f"{value} ({value:#x})"


def option_values(doc: Dict[str, Any]) -> str:
    """NAME=VALUES for an option document (shakeout.discovery.option_doc)."""
    if doc.get("choices"):
        values = "|".join(doc["choices"])
    elif doc.get("kind") == "text":
        values = "TEXT"  # its range is the text's length in bytes, not a value
    elif doc.get("minimum") is not None and doc.get("maximum") is not None:
        low, high = doc["minimum"], doc["maximum"]
        # Integers are written out whole: 0..9007199254740991, not 9.0072e+15.
        values = f"{low:g}..{high:g} s" if doc.get("kind") == "seconds" else f"{low:.0f}..{high:.0f}"
    else:
        values = "VALUE"
    default = doc.get("default")
    return f"{doc['name']}={values}" + (f" (default {default})" if default not in (None, "") else "")


def render_probe(doc: Dict[str, Any], console: Console) -> None:
    """One probe (shakeout.discovery.probe_doc): what it runs, what it needs, its options."""
    console.print(f"[bold]{escape(doc['id'])}[/]")
    paragraph(console, doc["summary"], 2)
    needs = doc["needs"]
    where = " or ".join(needs["os"]) + (" on " + " or ".join(needs["arch"]) if needs["arch"] else "")
    root = ", root" if needs["root"] else ""
    paragraph(console, f"checks: {', '.join(doc['bugs']) or 'no catalog bug'}", 2, 2)
    paragraph(console, f"needs {where}{root}; runs {doc['default_duration_s']:g} s by default", 2, 2)
    if doc["exposure"]:
        paragraph(console, f"one exposure (an event that opens the bug's window): {doc['exposure']}", 2, 2)
    if doc["options"]:
        console.print(f"  options (shakeout run {escape(doc['id'])} --set NAME=VALUE):", highlight=False)
    for option in doc["options"]:
        paragraph(console, f"{option_values(option)}: {option['help']}", 4, 2)
    if doc["injections"]:
        names = ", ".join(i["name"] for i in doc["injections"])
        paragraph(console, f"faults selftest injects: {names}", 2, 2)


def render_probes(docs: List[Dict[str, Any]], console: Console) -> None:
    for n, doc in enumerate(docs):
        if n:
            console.print()
        render_probe(doc, console)


def render_host(host: Host, console: Console) -> None:
    table = Table(title="This machine", title_justify="left", show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    for fact, value in host_summary(host):
        table.add_row(fact, escape(value))
    console.print(table)


def render_vdso(report: VdsoReport, console: Console) -> None:
    """The `shakeout vdso` table: static and measured stack use per function."""
    table = Table(
        title=f"Stack use below the caller's stack pointer: {report.source} (budget {report.budget_bytes} bytes)",
        title_justify="left",
        expand=True,
    )
    for col, justify in (
        ("function", "left"),
        ("static", "right"),
        ("measured", "right"),
        ("leaf", "left"),
        ("probes", "left"),
        ("deepest via", "left"),
    ):
        table.add_column(
            col,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=col in ("static", "measured", "leaf"),
            overflow="fold",
        )
    table.add_column("flag", min_width=12)
    for row in report.rows:
        flags = []
        if row.dangerous:
            flags.append("[bold red]reaches a page below SP[/]")
        elif row.over_budget:
            flags.append("[yellow]over budget[/]")
        if not row.complete:
            flags.append("[yellow]incomplete: {}[/]".format(escape("; ".join(row.notes))))
        if not row.consistent:
            flags.append("[bold red]measured > static: analysis error[/]")
        deepest_probe = max(row.probes, key=lambda p: p.depth, default=None)
        probes = (
            f"{len(row.probes)}, deepest -{deepest_probe.depth} at {deepest_probe.address:#x}" if deepest_probe else "-"
        )
        table.add_row(
            escape(" / ".join([row.name, *row.aliases])),
            str(row.static_bytes),
            "-" if row.measured_bytes is None else str(row.measured_bytes),
            "yes" if row.leaf else "no",
            probes,
            escape(" → ".join(row.decided_by)) or "-",
            " ".join(flags),
        )
    console.print(table)
    for note in report.notes:
        console.print(escape(note), style="dim")
