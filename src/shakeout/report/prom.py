"""Prometheus text exposition for node_exporter's textfile collector.

Write it with `--output /var/lib/node_exporter/textfile_collector/shakeout.prom` (the
write is atomic, as the collector requires). Verdicts are state sets: one series per
possible verdict with value 1 for the current one, so alerts can match on the label.
Defects and hazards are separate metrics, so "any defect vulnerable" is one expression:
`max(shakeout_bug_status{verdict="vulnerable"}) == 1`, and a hazard present on every
host never fires it.

Names follow https://prometheus.io/docs/practices/naming/: base units (`_seconds`), counts
of events as counters (`_total`: exposures and iterations of the run; they restart with
each run, which rate() reads as a counter reset), an `_info` metric with value 1 for the
version, kernel and CPU, and times as values (`_timestamp_seconds`). Samples carry no
timestamps: node_exporter's textfile collector refuses a file that has them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, Iterator, List, Optional

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from shakeout.results import BUG_VERDICTS, HAZARD_VERDICTS, PROBE_VERDICTS, RunReport


def render_prometheus(report: RunReport) -> str:
    registry = CollectorRegistry()
    bug_status = Gauge(
        "shakeout_bug_status",
        "1 for the defect's current verdict, 0 for the others (hazards: shakeout_hazard_status)",
        ["bug", "kind", "verdict"],
        registry=registry,
    )
    hazard_status = Gauge(
        "shakeout_hazard_status",
        "1 for the hazard's current state (present/absent/...), 0 for the others",
        ["hazard", "state"],
        registry=registry,
    )
    probe_verdict = Gauge(
        "shakeout_probe_verdict",
        "1 for the probe's verdict, 0 for the others",
        ["probe", "verdict"],
        registry=registry,
    )
    elapsed = Gauge("shakeout_probe_elapsed_seconds", "how long the probe ran", ["probe"], registry=registry)
    bound = Gauge(
        "shakeout_probe_failure_probability_bound",
        "per-exposure failure probability bound at 95 % confidence after a clean run (3/exposures)",
        ["probe"],
        registry=registry,
    )
    metric = Gauge(
        "shakeout_probe_metric",
        "numeric metrics reported by the probe",
        ["probe", "metric"],
        registry=registry,
    )
    caught = Gauge(
        "shakeout_selftest_caught",
        "1 when the probe caught the injected fault",
        ["probe", "injection"],
        registry=registry,
    )
    last_run = Gauge(
        "shakeout_last_run_elapsed_seconds",
        "duration of the whole shakeout run",
        ["command"],
        registry=registry,
    )
    started = Gauge(
        "shakeout_last_run_timestamp_seconds",
        "when the run started (Unix time)",
        ["command"],
        registry=registry,
    )
    _info(report, registry)
    registry.register(_RunCounters(report))

    for bug in report.bugs:
        if bug.kind == "hazard":
            for state in HAZARD_VERDICTS:
                hazard_status.labels(bug.bug_id, state).set(1 if bug.verdict == state else 0)
            continue
        for verdict in BUG_VERDICTS:
            bug_status.labels(bug.bug_id, bug.kind, verdict).set(1 if bug.verdict == verdict else 0)
    for result in report.probes:
        name = result.name
        for verdict in PROBE_VERDICTS:
            probe_verdict.labels(name, verdict).set(1 if result.verdict == verdict else 0)
        elapsed.labels(name).set(result.elapsed_s)
        if result.bound is not None:
            bound.labels(name).set(result.bound)
        for key, value in result.metrics.items():
            if isinstance(value, (int, float)):
                metric.labels(name, key).set(value)
    for s in report.selftests:
        if s.ran:
            caught.labels(s.probe_id, s.injection).set(1 if s.caught else 0)
    last_run.labels(report.command).set(report.elapsed_s)
    when = _unix_time(report.started_at)
    if when is not None:
        started.labels(report.command).set(when)
    text: str = generate_latest(registry).decode("utf-8")
    return text


INFO_LABELS = ("version", "arch", "kernel", "cpu_vendor", "cpu_family", "cpu_model", "cpu_stepping", "microcode")


def _info_values(report: RunReport) -> List[str]:
    host: Dict[str, Any] = report.host or {}
    cpu: Dict[str, Any] = host.get("cpu") or {}
    values = [report.tool_version, host.get("arch"), host.get("kernel_release"), cpu.get("vendor")]
    values += [cpu.get("family"), cpu.get("model"), cpu.get("stepping"), cpu.get("microcode")]
    return ["" if v is None else str(v) for v in values]


def _info(report: RunReport, registry: CollectorRegistry) -> None:
    info = Gauge(
        "shakeout_info", "1; the labels say which shakeout ran on which kernel and CPU", INFO_LABELS, registry=registry
    )
    info.labels(*_info_values(report)).set(1)


def _unix_time(iso: str) -> Optional[float]:
    try:
        when = dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=when.tzinfo or dt.timezone.utc).timestamp()


class _RunCounters:
    """Exposures and iterations as counters without a `_created` sample (it would change every run)."""

    def __init__(self, report: RunReport) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        exposures = CounterMetricFamily(
            "shakeout_probe_exposures", "bug-triggering events the probe produced in the run", labels=["probe"]
        )
        iterations = CounterMetricFamily(
            "shakeout_probe_iterations", "check iterations the probe ran", labels=["probe"]
        )
        for result in self.report.probes:
            exposures.add_metric([result.name], result.exposures)
            iterations.add_metric([result.name], result.iterations)
        yield exposures
        yield iterations
