"""The memtest report as text (for people) or JSON (for machines), and its live progress."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from shakeout.memtest.sensors import describe_changes
from shakeout.memtest.session import CLEAN, COULD_NOT_TEST, MemtestReport
from shakeout.memtest.sizes import human_bytes

WEAK_EVIDENCE = (
    "a clean run is evidence about the memory tested, for the passes run, at today's temperature: weak "
    "cells often fail only after several passes or when hot (seed 002's did)"
)
LINE_INTERVAL_S = 5.0


def render_json(report: MemtestReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def _summary(report: MemtestReport) -> List[str]:
    setup = report.setup
    locked = setup.get("locked", report.evidence.get("locked"))
    lines = [
        f"tested {human_bytes(report.plan.size_bytes)} ({report.plan.size_reason})",
        f"tests {', '.join(report.plan.tests)}; {report.passes_completed} pass(es) completed, "
        f"{human_bytes(report.bytes_verified)} verified in {report.elapsed_s:.1f} s ({report.gbps:.2f} GB/s) "
        f"on {setup.get('threads', '?')} thread(s)",
    ]
    if locked is False:
        lines.append("memory was NOT locked (--allow-unlocked): pages that were swapped out were not RAM-tested")
    if setup and not setup.get("physical_addresses"):
        lines.append(
            "physical addresses need root (CAP_SYS_ADMIN reads page frames from /proc/self/pagemap): cells are "
            "named by virtual address and cannot be fenced"
        )
    return lines


def _cells_table(report: MemtestReport) -> Table:
    table = Table(title=f"weak cells ({report.errors_total} errors)", show_lines=False)
    for column in ("rank", "address", "bit", "hits", "tests", "passes", "CPUs", "flips", "first s"):
        table.add_column(column)
    for rank, cell in enumerate(report.cells, 1):
        kind = "phys" if cell.physical else "virt"
        table.add_row(
            str(rank),
            f"{kind} {cell.address:#x}",
            str(cell.bit),
            str(cell.hits),
            ",".join(cell.tests),
            ",".join(map(str, cell.passes)),
            ",".join(map(str, cell.cpus)),
            f"0→1 ×{cell.to_one}, 1→0 ×{cell.to_zero}",
            f"{cell.first_s:.3f}",
        )
    return table


def _fencing_lines(report: MemtestReport) -> List[str]:
    fencing = report.fencing
    if not fencing.blocks:
        return ["no physical address is known for these cells (run as root), so there is nothing to fence yet"]
    doc: Dict[str, Any] = fencing.to_dict()
    lines = [
        f"blocks of {human_bytes(fencing.granularity_bytes)}: "
        + ", ".join(f"{b['start']}-{b['end']}" for b in doc["blocks"]),
        "/etc/default/grub (then update-grub or grub-mkconfig):",
        f"  {fencing.grub_badram}",
        "or the kernel's own reservation, on its command line:",
        f"  {' '.join(fencing.memmap)}",
        f"  in grub.cfg / at GRUB's edit prompt: {fencing.grub_cfg_memmap}",
        f"  in /etc/default/grub: {fencing.default_grub_memmap}",
        f"and, for the kernel's early test at every boot: {doc['kernel_memtest']}",
    ]
    lines += [f"- {w}" for w in doc["where_each_works"]]
    return lines


def render_text(report: MemtestReport, console: Console) -> None:
    verdicts = {CLEAN: "no error found", COULD_NOT_TEST: "could not test"}
    headline = verdicts.get(report.status, f"{len(report.cells)} weak cell(s) found")
    if report.interrupted_by is not None:
        headline += " (interrupted)"
    console.print(f"[bold]shakeout memtest: {headline}[/bold]")
    if report.reason and report.status != CLEAN:
        console.print(report.reason, markup=False)
    for line in _summary(report):
        console.print(line, markup=False)
    if report.cells:
        console.print(_cells_table(report))
        if report.propagated_copies:
            console.print(
                f"block-move: {report.propagated_copies} wrong copies of already-reported source words were "
                "attributed to their source cell, not counted again",
                markup=False,
            )
        console.print("[bold]fencing the cells off[/bold]")
        for line in _fencing_lines(report):
            console.print(line, markup=False, soft_wrap=True)
    elif report.status == CLEAN:
        console.print(WEAK_EVIDENCE, markup=False)
    changes = describe_changes(report.sensors_before, report.sensors_after)
    console.print(
        "sensors: " + ("; ".join(changes) if changes else "no temperature or EDAC counter is exposed here"),
        markup=False,
    )


class MemtestProgress:
    """Bytes tested, GB/s, pass, errors, ETA: a rich bar on a terminal, a line every few seconds elsewhere."""

    def __init__(self, console: Optional[Console] = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar: Optional[Progress] = None
        self.task: Optional[TaskID] = None
        self.last_line = 0.0

    def __enter__(self) -> MemtestProgress:
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("memtest", style="bold"),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
            )
            self.task = self.bar.add_task("memtest", total=1.0, stats="locking memory")
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()

    @staticmethod
    def describe(status: Dict[str, Any]) -> str:
        passes = status.get("passes") or "∞"
        return (
            f"pass {status.get('pass')}/{passes} · {status.get('test')} · "
            f"{human_bytes(int(status.get('bytes_verified', 0)))} verified · {float(status.get('gbps', 0)):.2f} GB/s · "
            f"{status.get('errors', 0)} errors · ETA {float(status.get('eta_s', 0)):.0f} s"
        )

    def on_status(self, status: Dict[str, Any]) -> None:
        elapsed, eta = float(status.get("elapsed", 0)), float(status.get("eta_s", 0))
        if self.bar and self.task is not None:
            done = elapsed / (elapsed + eta) if elapsed + eta > 0 else 0.0
            self.bar.update(self.task, completed=done, stats=self.describe(status))
        elif time.monotonic() - self.last_line >= LINE_INTERVAL_S:
            self.last_line = time.monotonic()
            print("shakeout memtest: " + self.describe(status), file=sys.stderr, flush=True)
