"""Progress on stderr: rich progress bars on a terminal, one plain line per event otherwise."""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from shakeout.engine import Monitor
from shakeout.protocol import Progress as ProbeProgress
from shakeout.results import ProbeResult


class ConsoleMonitor(Monitor):
    def __init__(self, console: Optional[Console] = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.bars: Optional[Progress] = None
        self.tasks: Dict[str, TaskID] = {}

    def __enter__(self) -> ConsoleMonitor:
        if self.live:
            self.bars = Progress(
                TextColumn("{task.description}", style="bold"),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars:
            self.bars.stop()

    def started(self, label: str, duration_s: float) -> None:
        if self.bars:
            self.tasks[label] = self.bars.add_task(label, total=duration_s, stats="starting")
        else:
            print(f"shakeout: running {label} for {duration_s:.1f} s", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        if self.bars:
            self.bars.console.print(message, style="dim", markup=False, highlight=False)
        else:
            print("shakeout: " + message, file=sys.stderr, flush=True)

    def progress(self, label: str, progress: ProbeProgress) -> None:
        if not self.bars or label not in self.tasks:
            return
        rate = progress.exposures / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
        stats = f"{progress.iterations:,} iterations · {progress.exposures:,} exposures · {rate:,.0f}/s"
        self.bars.update(self.tasks[label], completed=progress.elapsed_s, stats=stats)

    def status(self, label: str, event: Dict[str, Any]) -> None:
        """Per-CPU counts (cpu-integrity) next to the bar: a slow or failing CPU shows."""
        cpus = event.get("cpus")
        if not self.bars or label not in self.tasks or not isinstance(cpus, list):
            return
        parts = []
        for c in cpus[:16]:
            if not isinstance(c, dict):
                continue
            state = " offline" if c.get("offline") else (" FAILED" if c.get("failures") else "")
            parts.append(f"cpu{c.get('cpu')} {int(c.get('executions', 0)):,}{state}")
        more = f" +{len(cpus) - 16} CPUs" if len(cpus) > 16 else ""
        self.bars.update(self.tasks[label], stats=" · ".join(parts) + more)

    def finished(self, label: str, result: ProbeResult) -> None:
        found_after = result.time_to_detect_s
        when = f"found after {found_after:.3g} s, " if found_after is not None else ""
        exposures = f"{result.exposures:,} exposure" + ("" if result.exposures == 1 else "s")
        summary = f"{label}: {result.verdict} ({when}{exposures} in {result.elapsed_s:.1f} s)"
        if self.bars and label in self.tasks:
            task = self.tasks[label]
            self.bars.update(task, completed=self.bars.tasks[task].total, stats=result.verdict)
        else:
            print("shakeout: " + summary, file=sys.stderr, flush=True)
